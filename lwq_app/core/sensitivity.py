"""Per-tensor sensitivity: the imatrix-weighted squared error each candidate type causes.

For a tensor W (rows × ne0) and importance weights w (in_sum2/count, per expert), the error
of type T is Σ_rows Σ_j w_j (W_ij − Ŵ_ij)², Ŵ = dequantize(quantize_T(W, w)) with ggml's own
kernels. It estimates the added squared error of the matmul output summed over tokens, so it
is *absolute* and comparable across tensors; ``relative`` divides by Σ w_j W_ij² for display.
Large tensors are measured on a seeded row sample and scaled to all rows. Tensors without
imatrix data (token_embd, a tied output) use w = 1 and are marked ``weighted=False``.
Results are cached per (model data hash, imatrix hash, settings).
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .childproc import ChildContext, run_in_child
from .errors import ModelFileError
from .fileio import atomic_write_text
from .imatrix import Imatrix, read_imatrix
from .mixes import tensor_requires_imatrix
from .model import ModelInfo, TensorInfo, open_model
from .progress import CancelToken, Progress, ProgressSink, Stage
from .project import model_hash
from .qtypes import PLANNABLE, TYPES, valid_types

#: candidate types measured by default (F16 is the lossless top of every frontier)
CANDIDATES: tuple[str, ...] = tuple(t for t in PLANNABLE if t not in ("BF16", "F32"))
SENS_VERSION = 1


@dataclass(frozen=True)
class TensorSensitivity:
    name: str
    shape: tuple[int, ...]
    weighted: bool
    rows_measured: int
    #: type -> absolute weighted squared error (scaled to all rows)
    error: dict[str, float]
    #: Σ w W² of the tensor (the denominator of the relative error)
    energy: float

    def relative(self, type_name: str) -> float:
        return self.error[type_name] / self.energy if self.energy > 0 else float("nan")

    def bytes(self, type_name: str) -> int:
        return TYPES[type_name].row_bytes(self.shape[0]) * int(np.prod(self.shape[1:]))


@dataclass(frozen=True)
class Sensitivity:
    model_hash: str
    imatrix_hash: str
    max_rows: int
    tensors: dict[str, TensorSensitivity]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SENS_VERSION,
            "model_hash": self.model_hash,
            "imatrix_hash": self.imatrix_hash,
            "max_rows": self.max_rows,
            "tensors": {
                n: {
                    "shape": list(t.shape),
                    "weighted": t.weighted,
                    "rows": t.rows_measured,
                    "error": t.error,
                    "energy": t.energy,
                }
                for n, t in self.tensors.items()
            },
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Sensitivity:
        return Sensitivity(
            d["model_hash"],
            d["imatrix_hash"],
            int(d["max_rows"]),
            {
                n: TensorSensitivity(
                    n,
                    tuple(t["shape"]),
                    bool(t["weighted"]),
                    int(t["rows"]),
                    {k: float(v) for k, v in t["error"].items()},
                    float(t["energy"]),
                )
                for n, t in d["tensors"].items()
            },
        )


def candidate_types(
    t: TensorInfo, has_imatrix_entry: bool, types: Sequence[str] = CANDIDATES
) -> list[str]:
    """Types valid for ``t``: blocks divide ne0 (no fallback) and imatrix needs are met."""
    from .engine.kernels import requires_imatrix

    out = []
    for name in valid_types(t.ne0, tuple(types)):
        q = TYPES[name]
        if not has_imatrix_entry and (
            requires_imatrix(q.ggml_id) or tensor_requires_imatrix(t.name, name, None)
        ):
            continue
        out.append(name)
    return out


def read_rows(t: TensorInfo, model: ModelInfo, rows: np.ndarray | None) -> np.ndarray:
    """Rows of a float tensor as float32 (n, ne0), from the memory-mapped file."""
    ne0 = t.ne0
    n_rows = t.n_params // ne0
    mm = np.memmap(model.paths[t.file_index], np.uint8, "r", t.data_offset, t.n_bytes)
    a: np.ndarray
    if t.type == "F32":
        a = mm.view(np.float32).reshape(n_rows, ne0)
    elif t.type == "F16":
        a = mm.view(np.float16).reshape(n_rows, ne0)
    elif t.type == "BF16":
        b = mm.view(np.uint16).reshape(n_rows, ne0)
        sel = b if rows is None else b[rows]
        return (sel.astype(np.uint32) << 16).view(np.float32)
    else:
        raise ModelFileError(
            f"{model.path}: tensor {t.name} is {t.type}; sensitivity needs an F32/F16/BF16 "
            "source (use lwq upcast)"
        )
    return np.asarray(a if rows is None else a[rows], dtype=np.float32)


def _sample(t: TensorInfo, max_rows: int) -> np.ndarray | None:
    n_rows = t.n_params // t.ne0
    if max_rows <= 0 or n_rows <= max_rows:
        return None
    rng = np.random.default_rng([SENS_VERSION, zlib.crc32(t.name.encode())])
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


def _measure_tensor(
    t: TensorInfo, model: ModelInfo, weights: np.ndarray | None, types: Sequence[str], max_rows: int
) -> TensorSensitivity:
    from .engine.kernels import quantize_dequantize

    rows = _sample(t, max_rows)
    w = read_rows(t, model, rows)
    n_rows = t.n_params // t.ne0
    rows_per_expert = n_rows // t.n_experts
    idx = np.arange(n_rows) if rows is None else rows
    expert = idx // rows_per_expert
    imat = None if weights is None else weights.reshape(t.n_experts, t.ne0)
    wt = np.ones((len(idx), t.ne0), np.float32) if imat is None else imat[expert]
    scale = n_rows / len(idx)
    energy = float(np.sum(wt.astype(np.float64) * np.square(w, dtype=np.float64))) * scale
    err: dict[str, float] = {}
    for name in types:
        q = TYPES[name]
        if imat is None:
            deq = quantize_dequantize(q.ggml_id, w, None)
        else:
            deq = np.empty_like(w)
            for e in np.unique(expert):
                sel = expert == e
                deq[sel] = quantize_dequantize(q.ggml_id, w[sel], imat[e])
        d = np.square(w - deq, dtype=np.float64)
        err[name] = float(np.sum(d * wt)) * scale
    return TensorSensitivity(t.name, t.shape, imat is not None, len(idx), err, energy)


def _child_measure(
    cctx: ChildContext, model_path: str, imatrix_path: str | None, max_rows: int, types: list[str]
) -> dict[str, Any]:
    model = open_model(model_path)
    im = read_imatrix(imatrix_path) if imatrix_path else None
    weights = im.weights() if im is not None else {}
    todo = [t for t in model.tensors if t.quantizable]
    out: dict[str, TensorSensitivity] = {}
    for i, t in enumerate(todo):
        wts = weights.get(t.name)
        cands = candidate_types(t, wts is not None, types)
        out[t.name] = _measure_tensor(t, model, wts, cands, max_rows)
        cctx.progress(Progress(Stage.EVAL, i + 1, len(todo), t.name))
    return Sensitivity("", "", max_rows, out).to_dict()


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def cache_dir() -> Path:
    d = Path(os.environ.get("LWQ_CACHE", Path.home() / ".cache" / "lwq")) / "sensitivity"
    d.mkdir(parents=True, exist_ok=True)
    return d


def measure_sensitivity(
    model_path: str | Path,
    imatrix_path: str | Path | None,
    *,
    max_rows: int = 256,
    types: Sequence[str] = CANDIDATES,
    use_cache: bool = True,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> Sensitivity:
    """Measure every quantizable tensor × valid candidate type (child process, cached)."""
    model = open_model(model_path)
    if imatrix_path:  # read first: a missing or wrong file is an error naming it
        imx: Imatrix = read_imatrix(imatrix_path)
        imx.check_model(model)
    im_hash = file_hash(imatrix_path) if imatrix_path else "none"
    m_hash = model_hash(model)  # cached by path, size and mtime (project.py)
    key = hashlib.sha256(
        f"{SENS_VERSION}|{m_hash}|{im_hash}|{max_rows}|{','.join(types)}".encode()
    ).hexdigest()[:24]
    cached = cache_dir() / f"{key}.json"
    if use_cache and cached.is_file():
        try:
            return Sensitivity.from_dict(json.loads(cached.read_text()))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is measured again
    d = run_in_child(
        "lwq_app.core.sensitivity:_child_measure",
        {
            "model_path": str(model.path),
            "imatrix_path": None if imatrix_path is None else str(imatrix_path),
            "max_rows": max_rows,
            "types": list(types),
        },
        progress=progress,
        cancel=cancel,
    )
    d["model_hash"], d["imatrix_hash"] = m_hash, im_hash
    if use_cache:
        atomic_write_text(cached, json.dumps(d))
    return Sensitivity.from_dict(d)
