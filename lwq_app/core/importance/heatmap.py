"""Layers × tensor-kinds matrices for heatmaps, so a view only draws.

Any per-tensor number (an imatrix statistic, a sensitivity) becomes a dense float matrix with
NaN where a layer has no such tensor or no value, plus an explicit ``present`` mask: a missing
cell is never shown as zero. Tensors outside the layers (``output``, ``token_embd``) are kept
aside in ``extra``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..modelfile.inventory import tensor_kind, tensor_layer
from .sensitivity import Sensitivity
from .statistics import ImatrixStats

#: columns in a stable, readable order; other kinds follow alphabetically
KIND_ORDER = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
    "ffn_gate_exps",
    "ffn_up_exps",
    "ffn_down_exps",
)

STAT_FIELDS: tuple[str, ...] = (
    "sum_act2",
    "min",
    "max",
    "mean",
    "std",
    "active",
    "entropy",
    "entropy_norm",
    "zd",
    "cossim",
)


@dataclass(frozen=True)
class Heatmap:
    label: str
    layers: tuple[int, ...]
    kinds: tuple[str, ...]
    values: np.ndarray  # float64 (n_layers, n_kinds), NaN where missing
    present: np.ndarray  # bool (n_layers, n_kinds)
    extra: dict[str, float] = field(default_factory=dict)

    def cell(self, layer: int, kind: str) -> float | None:
        """The value at (layer, kind), or None for a missing cell."""
        i, j = self.layers.index(layer), self.kinds.index(kind)
        return float(self.values[i, j]) if self.present[i, j] else None


def _kind_key(k: str) -> tuple[int, str]:
    return (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k)


def heatmap(
    values: Mapping[str, float], label: str, all_tensors: Iterable[str] | None = None
) -> Heatmap:
    """Matrix of ``values`` (tensor name → number); ``all_tensors`` fixes the grid's extent.

    A cell whose tensor exists (in ``all_tensors``) but has no value, or a non-finite one,
    is missing, exactly like a cell whose layer has no tensor of that kind.
    """
    names = list(all_tensors) if all_tensors is not None else list(values)
    layers = sorted({x for n in names if (x := tensor_layer(n)) is not None})
    kinds = sorted({tensor_kind(n) for n in names if tensor_layer(n) is not None}, key=_kind_key)
    li = {x: i for i, x in enumerate(layers)}
    ki = {k: j for j, k in enumerate(kinds)}
    mat = np.full((len(layers), len(kinds)), np.nan)
    extra: dict[str, float] = {}
    for name, v in values.items():
        layer = tensor_layer(name)
        if layer is None:
            extra[name] = float(v)
        elif layer in li and tensor_kind(name) in ki:
            mat[li[layer], ki[tensor_kind(name)]] = float(v)
    present = np.isfinite(mat)
    mat[~present] = np.nan
    return Heatmap(label, tuple(layers), tuple(kinds), mat, present, extra)


def stats_heatmap(st: ImatrixStats, stat: str, all_tensors: Iterable[str] | None = None) -> Heatmap:
    """Heatmap of one ``TensorStats`` field (see ``STAT_FIELDS``)."""
    if stat not in STAT_FIELDS:
        raise KeyError(f"unknown statistic {stat!r}; known: {', '.join(STAT_FIELDS)}")
    vals = {t.name: float(getattr(t, stat)) for t in st.tensors}
    return heatmap(vals, stat, all_tensors)


def sensitivity_heatmap(sens: Sensitivity, type_name: str, *, relative: bool = False) -> Heatmap:
    """Error of ``type_name`` per tensor; a tensor for which the type is invalid is missing."""
    vals = {
        n: (t.relative(type_name) if relative else t.error[type_name])
        for n, t in sens.tensors.items()
        if type_name in t.error
    }
    label = f"{'relative' if relative else 'absolute'} error {type_name}"
    return heatmap(vals, label, sens.tensors)
