"""Per-tensor sensitivity: the imatrix-weighted squared error each candidate type causes.

For a tensor W (rows × ne0) and importance weights w (in_sum2/count, per expert), the error
of type T is Σ_rows Σ_j w_j (W_ij − Ŵ_ij)², Ŵ = dequantize(quantize_T(W, w)) with ggml's own
kernels. It estimates the added squared error of the matmul output summed over tokens, so it
is *absolute* and comparable across tensors; ``relative`` divides by Σ w_j W_ij² for display.
Large tensors are measured on a seeded row sample and scaled to all rows. Tensors without
imatrix data (token_embd, a tied output) use w = 1 and are marked ``weighted=False``.
Results are cached per (model data hash, imatrix hash, settings) under
``cache_dir("sensitivity")``; a cancelled measurement leaves no cache file.

The job: ``measure_sensitivity(SensitivityRequest(model, imatrix, max_rows, types))``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.atomic import atomic_write_text
from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import InputError, ModelFileError
from ..jobs.paths import cache_dir
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from ..modelfile.hashing import model_hash, sha256_file, sha256_text
from ..modelfile.imatrix_file import Imatrix, read_imatrix
from ..modelfile.inventory import ModelInfo, TensorInfo, open_model
from ..modelfile.type_catalog import CANDIDATES as CANDIDATES  # moved; importable from here
from ..modelfile.type_catalog import TYPES
from ..plan.ladder import valid_candidates

SENS_VERSION = 1


@dataclass(frozen=True)
class TensorSensitivity:
    name: str
    shape: tuple[int, ...]
    weighted: bool
    rows_measured: int
    #: type -> absolute weighted squared error (scaled to all rows); read-only
    error: Mapping[str, float]
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
    #: tensor name -> its measurement, every quantizable tensor of the model; read-only
    tensors: Mapping[str, TensorSensitivity]

    def to_dict(self) -> dict[str, Any]:
        """The cache file's content."""
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
                    "error": dict(t.error),
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
    """Types valid for ``t``: blocks divide ne0 (no fallback) and imatrix needs are met
    (``plan.ladder.valid_candidates``: the plan editor's ladders are the same types)."""
    return valid_candidates(t.name, t.ne0, has_imatrix_entry, types)


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
    from ..engine.kernels import quantize_dequantize

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
        cctx.progress(Progress(Phase.MEASURE, i, len(todo), t.name))
        wts = weights.get(t.name)
        cands = candidate_types(t, wts is not None, types)
        out[t.name] = _measure_tensor(t, model, wts, cands, max_rows)
    cctx.progress(Progress(Phase.MEASURE, len(todo), len(todo), "measured"))
    return Sensitivity("", "", max_rows, out).to_dict()


def sensitivity_cache_dir() -> Path:
    """Where measured sensitivities are cached (created on first use)."""
    d = cache_dir("sensitivity")
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass(frozen=True)
class SensitivityRequest:
    """Measure every quantizable tensor of ``model`` × each valid type of ``types``.

    ``imatrix`` None weighs every column 1; ``max_rows`` rows are sampled per tensor (0: all
    rows); ``types`` None means ``CANDIDATES``. ``use_cache`` reads and writes the cache;
    ``write_cache`` False reads it but leaves writing to the caller (``cache_sensitivity``),
    so a composite job that is cancelled later leaves no cache file either.
    """

    model: Path
    imatrix: Path | None = None
    max_rows: int = 256
    types: tuple[str, ...] | None = None
    use_cache: bool = True
    write_cache: bool = True


def check_types(types: Sequence[str] | None) -> tuple[str, ...]:
    """``types`` upper-cased and checked against ``CANDIDATES`` (None: all of them)."""
    if types is None:
        return CANDIDATES
    out = tuple(dict.fromkeys(t.strip().upper() for t in types))
    unknown = [t for t in out if t not in CANDIDATES]
    if unknown:
        raise InputError(
            f"--types: unknown candidate type(s) {', '.join(unknown)} "
            f"(candidates: {', '.join(CANDIDATES)})"
        )
    if not out:
        raise InputError("--types: no candidate type given")
    return out


def _cache_file(m_hash: str, im_hash: str, max_rows: int, types: Sequence[str]) -> Path:
    key = sha256_text(f"{SENS_VERSION}|{m_hash}|{im_hash}|{max_rows}|{','.join(types)}")[:24]
    return cache_dir("sensitivity") / f"{key}.json"


def cache_sensitivity(request: SensitivityRequest, sens: Sensitivity) -> None:
    """Keep ``sens`` (measured for ``request``) in the cache."""
    path = _cache_file(
        sens.model_hash, sens.imatrix_hash, sens.max_rows, check_types(request.types)
    )
    sensitivity_cache_dir()
    atomic_write_text(path, json.dumps(sens.to_dict()))


def _check_source(model: ModelInfo) -> None:
    for t in model.tensors:
        if t.quantizable and t.type not in ("F32", "F16", "BF16"):
            raise ModelFileError(
                f"{model.path}: tensor {t.name} is {t.type}; sensitivity needs an F32/F16/BF16 "
                "source (use lwq upcast)"
            )


@public_job("sensitivity")
def measure_sensitivity(
    request: SensitivityRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> Sensitivity:
    """Measure every quantizable tensor × valid candidate type (child process, cached).

    Reports ``Phase.MEASURE`` per tensor; a cancelled run writes no cache file."""
    check(cancel)
    r = request
    types = check_types(r.types)
    if r.max_rows < 0:
        raise InputError(f"--max-rows {r.max_rows}: must be 0 (all rows) or more")
    model = open_model(r.model)
    if r.imatrix is not None:  # read first: a missing or wrong file is an error naming it
        imx: Imatrix = read_imatrix(r.imatrix)
        imx.check_model(model)
    _check_source(model)
    im_hash = sha256_file(r.imatrix, cancel=cancel) if r.imatrix is not None else "none"
    m_hash = model_hash(model)  # cached by path, size and mtime
    cached = _cache_file(m_hash, im_hash, r.max_rows, types)
    if r.use_cache and cached.is_file():
        try:
            return Sensitivity.from_dict(json.loads(cached.read_text()))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is measured again
    check(cancel)
    d = run_in_child(
        "lwq_app.core.importance.sensitivity:_child_measure",
        {
            "model_path": str(model.path),
            "imatrix_path": None if r.imatrix is None else str(r.imatrix),
            "max_rows": r.max_rows,
            "types": list(types),
        },
        progress=progress,
        cancel=cancel,
        job="sensitivity",
        subject=model.path,
        item_kind="tensor",
    )
    d["model_hash"], d["imatrix_hash"] = m_hash, im_hash
    sens = Sensitivity.from_dict(d)
    if r.use_cache and r.write_cache:
        sensitivity_cache_dir()
        atomic_write_text(cached, json.dumps(d))
    return sens
