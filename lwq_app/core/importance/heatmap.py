"""Layers × tensor-kinds matrices for heatmaps, so a view only draws.

Any per-tensor number (an imatrix statistic, a sensitivity) becomes a dense float matrix with
NaN where a layer has no such tensor or no value, plus an explicit ``present`` mask: a missing
cell is never shown as zero. Tensors outside the layers (``output``, ``token_embd``) are kept
aside in ``extra`` (finite values only); ``extra_names`` lists the model's outside-layer
tensors, so a view can label the ones without a value as missing. ``layer_values`` is the bar
beside the heatmap, ``heatmap_csv`` its export, ``heatmap_for`` the one call a view makes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..modelfile.inventory import ModelInfo, kind_sort_key, tensor_kind, tensor_layer
from .sensitivity import Sensitivity
from .statistics import ImatrixStats

SENSITIVITY_PREFIX = "sensitivity:"

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
    #: the outside-layer tensors of the model, in the model's order (with or without value)
    extra_names: tuple[str, ...] = ()
    #: (layer, kind) -> tensor name, for every cell whose tensor exists
    names: Mapping[tuple[int, str], str] = field(default_factory=dict)
    #: how ``layer_values`` combines a layer's cells: "mean" for statistics (intensive
    #: numbers), "sum" for absolute errors (they add up over a layer's tensors)
    layer_reduce: Literal["mean", "sum"] = "mean"

    def cell(self, layer: int, kind: str) -> float | None:
        """The value at (layer, kind), or None for a missing cell."""
        i, j = self.layers.index(layer), self.kinds.index(kind)
        return float(self.values[i, j]) if self.present[i, j] else None

    def tensor_name(self, layer: int, kind: str) -> str:
        """The tensor of a cell (``blk.7.ffn_down.weight``), also for a missing cell."""
        return self.names.get((layer, kind), f"blk.{layer}.{kind}.weight")

    @property
    def layer_values(self) -> np.ndarray:
        """The per-layer bar: float64 (n_layers,), the mean (or sum, ``layer_reduce``) of the
        layer's present cells; NaN for a layer without any."""
        return layer_profile(self)


def layer_profile(hm: Heatmap) -> np.ndarray:
    """``hm.layer_values``: each layer's present cells reduced; NaN where none is present."""
    n = hm.present.sum(axis=1)
    total = np.where(hm.present, hm.values, 0.0).sum(axis=1)
    out = total / np.maximum(n, 1) if hm.layer_reduce == "mean" else total
    return np.where(n > 0, out, np.nan)


def heatmap(
    values: Mapping[str, float],
    label: str,
    all_tensors: Iterable[str] | None = None,
    *,
    layer_reduce: Literal["mean", "sum"] = "mean",
) -> Heatmap:
    """Matrix of ``values`` (tensor name → number); ``all_tensors`` fixes the grid's extent.

    A cell whose tensor exists (in ``all_tensors``) but has no value, or a non-finite one,
    is missing, exactly like a cell whose layer has no tensor of that kind.
    """
    names = list(all_tensors) if all_tensors is not None else list(values)
    layers = sorted({x for n in names if (x := tensor_layer(n)) is not None})
    kinds = sorted(
        {tensor_kind(n) for n in names if tensor_layer(n) is not None}, key=kind_sort_key
    )
    li = {x: i for i, x in enumerate(layers)}
    ki = {k: j for j, k in enumerate(kinds)}
    mat = np.full((len(layers), len(kinds)), np.nan)
    cells: dict[tuple[int, str], str] = {}
    for n in names:
        layer = tensor_layer(n)
        if layer is not None:
            cells.setdefault((layer, tensor_kind(n)), n)
    extra: dict[str, float] = {}
    for name, v in values.items():
        layer = tensor_layer(name)
        if layer is None:
            if np.isfinite(float(v)):
                extra[name] = float(v)
        elif layer in li and tensor_kind(name) in ki:
            mat[li[layer], ki[tensor_kind(name)]] = float(v)
            cells.setdefault((layer, tensor_kind(name)), name)
    present = np.isfinite(mat)
    mat[~present] = np.nan
    outside = [n for n in names if tensor_layer(n) is None]
    outside += [n for n in extra if n not in outside]
    return Heatmap(
        label, tuple(layers), tuple(kinds), mat, present, extra, tuple(outside), cells,
        layer_reduce,
    )  # fmt: skip


def stats_heatmap(st: ImatrixStats, stat: str, all_tensors: Iterable[str] | None = None) -> Heatmap:
    """Heatmap of one ``TensorStats`` field (see ``STAT_FIELDS``)."""
    if stat not in STAT_FIELDS:
        raise KeyError(f"unknown statistic {stat!r}; known: {', '.join(STAT_FIELDS)}")
    vals = {t.name: float(getattr(t, stat)) for t in st.tensors}
    return heatmap(vals, stat, all_tensors)


def sensitivity_heatmap(
    sens: Sensitivity,
    type_name: str,
    *,
    relative: bool = False,
    all_tensors: Iterable[str] | None = None,
) -> Heatmap:
    """Error of ``type_name`` per tensor; a tensor for which the type is invalid is missing.
    A layer's bar is the sum of its absolute errors, or the mean of its relative ones."""
    vals = {
        n: (t.relative(type_name) if relative else t.error[type_name])
        for n, t in sens.tensors.items()
        if type_name in t.error
    }
    label = f"{'relative' if relative else 'absolute'} error {type_name}"
    grid = sens.tensors if all_tensors is None else all_tensors
    return heatmap(vals, label, grid, layer_reduce="mean" if relative else "sum")


def heatmap_for(source: ImatrixStats | Sensitivity, statistic: str, model: ModelInfo) -> Heatmap:
    """The heatmap a view shows, in one call: ``statistic`` is one of ``STAT_FIELDS`` (of
    imatrix statistics) or ``sensitivity:<TYPE>`` (``sensitivity:<TYPE>:relative``) of a
    sensitivity. The grid spans the model's quantizable tensors, so a tensor without a value
    is a missing cell (or a missing name in ``extra_names``), never a zero."""
    names = [t.name for t in model.tensors if t.quantizable and len(t.shape) >= 2]
    if statistic.startswith(SENSITIVITY_PREFIX):
        if not isinstance(source, Sensitivity):
            raise TypeError(f"{statistic} needs a Sensitivity, not {type(source).__name__}")
        type_name, _, mode = statistic[len(SENSITIVITY_PREFIX) :].partition(":")
        if mode not in ("", "relative"):
            raise KeyError(f"unknown sensitivity mode {mode!r} in {statistic!r}")
        measured = sorted({k for t in source.tensors.values() for k in t.error})
        if type_name not in measured:
            raise KeyError(f"no sensitivity measured for {type_name!r}; measured: {measured}")
        return sensitivity_heatmap(
            source, type_name, relative=mode == "relative", all_tensors=names
        )
    if not isinstance(source, ImatrixStats):
        raise TypeError(f"{statistic} needs ImatrixStats, not {type(source).__name__}")
    return stats_heatmap(source, statistic, names)


def heatmap_csv(hm: Heatmap) -> str:
    """The heatmap as CSV: ``layer,<kinds…>``, one row per layer (an empty field for a
    missing cell), then one row per outside-layer tensor (its name, its value or empty).
    Values are exact (``repr`` of the float)."""
    width = len(hm.kinds)
    lines = [",".join(["layer", *hm.kinds])]
    for i, layer in enumerate(hm.layers):
        row = [repr(float(hm.values[i, j])) if hm.present[i, j] else "" for j in range(width)]
        lines.append(",".join([str(layer), *row]))
    for name in hm.extra_names or tuple(hm.extra):
        v = hm.extra.get(name)
        cell = repr(float(v)) if v is not None else ""
        lines.append(",".join([name, cell, *([""] * max(0, width - 1))]))
    return "\n".join(lines) + "\n"
