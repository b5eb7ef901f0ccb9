"""Per-tensor and per-layer imatrix statistics, defined as ``llama-imatrix --show-statistics``.

A port of ``compute_statistics``, ``compute_cossim`` and ``show_statistics`` of the pinned
tools/imatrix/imatrix.cpp. The arithmetic is float32 and sequential where llama.cpp's is
(``std::accumulate``/``inner_product`` over floats), so printed figures agree digit for digit.
Per tensor, with v = in_sum2 / count per matrix (experts with count 0 skipped):
Σv, min, max, μ, σ, % active (|v| > 1e-5), N, entropy of v/Σv (bits), entropy / log2 N,
ZD (fraction with z > 1), and the cosine of the raw sums with the same tensor one layer up.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.boundary import public_job
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress
from ..modelfile.imatrix_file import Imatrix, read_imatrix

_BLK = re.compile(r"blk\.(\d+)\.")


@dataclass(frozen=True)
class TensorStats:
    name: str
    layer: int | None
    kind: str
    sum_act2: float
    min: float
    max: float
    mean: float
    std: float
    active: float  # fraction 0..1
    n: int
    entropy: float
    entropy_norm: float  # percent, 100 · entropy / log2 N
    zd: float  # fraction 0..1
    cossim: float


@dataclass(frozen=True)
class LayerStats:
    layer: int
    mean_sum_act2: float  # N-weighted mean of Σ(Act²)
    mean_zd: float  # fraction
    mean_cossim: float
    n_elements: int


@dataclass(frozen=True)
class ImatrixStats:
    source: str
    tensors: tuple[TensorStats, ...]  # in llama-imatrix's order: kind, then Σ(Act²) descending
    layers: tuple[LayerStats, ...]

    def to_dict(self) -> dict[str, Any]:
        """What ``lwq stats --json`` prints."""
        return {
            "source": self.source,
            "tensors": [asdict(t) for t in self.tensors],
            "layers": [asdict(x) for x in self.layers],
        }

    def by_name(self) -> dict[str, TensorStats]:
        return {t.name: t for t in self.tensors}


def split_name(name: str) -> tuple[str, str]:
    """``process_tensor_name``: (layer string or "-", the part before ``weight``)."""
    parts = name.split(".")
    layer = next((parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "blk"), "")
    tensor = next((parts[i - 1] for i in range(1, len(parts)) if parts[i] == "weight"), "")
    return layer or "-", tensor or name


def _seqsum(v: np.ndarray) -> np.float32:
    """Sequential float32 sum, as ``std::accumulate(..., 0.0f)``."""
    if v.size == 0:
        return np.float32(0.0)
    return np.float32(np.cumsum(v, dtype=np.float32)[-1])


def _tensor_stats(name: str, sums: np.ndarray, counts: np.ndarray) -> TensorStats | None:
    acts = [
        (sums[i].astype(np.float32) / np.float32(int(counts[i]))).astype(np.float32)
        for i in range(len(counts))
        if int(counts[i]) != 0
    ]
    if not acts:
        return None
    a = np.concatenate(acts)
    n = a.size
    total = _seqsum(a)
    mean = np.float32(total / np.float32(n))
    sq = _seqsum(a * a)
    var = np.float32(sq / np.float32(n)) - np.float32(mean * mean)
    dev = np.float32(math.sqrt(max(0.0, float(var))))
    inactive = int(np.count_nonzero(np.abs(a) <= np.float32(1e-5)))
    active = np.float32(1) - np.float32(inactive) / np.float32(n)
    entropy = np.float32(0.0)
    if total > 0:
        p = (a / total).astype(np.float32)
        p = p[p > 0]
        entropy = -_seqsum((p * np.log2(p)).astype(np.float32))
    zd = 0
    if dev > 0:
        zd = int(np.count_nonzero(((a - mean) / dev).astype(np.float32) > 1))
    layer_s, kind = split_name(name)
    e_norm = 100.0 * float(entropy) / math.log2(n) if n > 1 else 0.0
    return TensorStats(
        name,
        int(layer_s) if layer_s.isdigit() else None,
        kind,
        float(total),
        float(a.min()),
        float(a.max()),
        float(mean),
        float(dev),
        float(active),
        n,
        float(entropy),
        e_norm,
        float(np.float32(zd) / np.float32(n)),
        0.0,
    )


def compute_stats(im: Imatrix) -> ImatrixStats:
    """Statistics of every entry of ``im`` plus the per-layer N-weighted means."""
    raw: dict[str, np.ndarray] = {}
    rows: list[TensorStats] = []
    for name, e in im.entries.items():
        ts = _tensor_stats(name, e.sums, e.counts)
        if ts is not None:
            rows.append(ts)
            raw[name] = e.sums.reshape(-1).astype(np.float32)
    out = []
    for ts in rows:
        m = _BLK.search(ts.name)
        cs = 0.0
        if m:
            prev = ts.name[: m.start(1)] + str(int(m.group(1)) - 1) + ts.name[m.end(1) :]
            if prev in raw and raw[prev].size == raw[ts.name].size:
                cur, pv = raw[ts.name], raw[prev]
                dp = _seqsum(cur * pv)
                mag = np.float32(math.sqrt(_seqsum(cur * cur))) * np.float32(
                    math.sqrt(_seqsum(pv * pv))
                )
                cs = float(np.float32(dp / mag)) if mag > 0 else math.nan
        out.append(replace(ts, cossim=cs))
    out.sort(key=lambda t: (split_name(t.name)[1], -t.sum_act2))
    return ImatrixStats(im.source, tuple(out), _layers(out))


def _layers(ts: list[TensorStats]) -> tuple[LayerStats, ...]:
    acc: dict[int, list[Any]] = {}
    for t in ts:
        blk = t.layer if t.layer is not None else -1
        a = acc.setdefault(blk, [np.float32(0), np.float32(0), np.float32(0), 0])
        a[0] = np.float32(a[0] + np.float32(t.n * np.float32(t.sum_act2)))
        a[1] = np.float32(a[1] + np.float32(t.n * np.float32(t.zd)))
        a[2] = np.float32(a[2] + np.float32(t.n * np.float32(t.cossim)))
        a[3] += t.n
    return tuple(
        LayerStats(k, float(a[0] / a[3]), float(a[1] / a[3]), float(a[2] / a[3]), a[3])
        for k, a in sorted(acc.items())
        if k >= 0 and a[3] > 0
    )


def format_stats(st: ImatrixStats) -> str:
    """The two tables ``llama-imatrix --show-statistics`` prints (without its log prefixes)."""
    head = "\t".join(
        (
            " Layer",
            "       Tensor",
            "          Σ(Act²)",
            "  Min",
            "            Max",
            "           μ",
            "   σ",
            " % Active",
            "N",
            "   Entropy",
            "E (norm)",
            "ZD",
            "  CosSim",
        )
    )
    lines = [f"Computing statistics for {st.source} ({len(st.tensors)} tensors)", "", head]
    lines.append("=" * 169)
    for t in st.tensors:
        layer, kind = split_name(t.name)
        lines.append(
            f"{layer:>5}\t{kind:<20}\t{t.sum_act2:10.2f}\t{t.min:8.4f}\t{t.max:11.4f}\t"
            f"{t.mean:6.2f}\t{t.std:6.2f}\t{t.active * 100:8.2f}%\t{t.n:6d}\t{t.entropy:10.4f}\t"
            f"{t.entropy_norm:6.2f}%\t{100 * t.zd:10.2f}%\t{t.cossim:8.4f}"
        )
    lines += [
        "",
        f"Computing weighted average statistics per layer ({len(st.layers)} layers)",
        "",
        "  Layer\t     μΣ(Act²)\t      μZD\tμCosSim",
        "=" * 48,
    ]
    for x in st.layers:
        lines.append(
            f"{x.layer:5d}\t{x.mean_sum_act2:14.2f}\t{100 * x.mean_zd:10.4f}%\t{x.mean_cossim:6.4f}"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class StatisticsRequest:
    """The statistics of the imatrix file ``imatrix`` (GGUF or legacy ``.dat``)."""

    imatrix: Path


@public_job("stats")
def imatrix_statistics(
    request: StatisticsRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> ImatrixStats:
    """``llama-imatrix --show-statistics`` of one file (instant: cancel is checked on entry)."""
    check(cancel)
    return compute_stats(read_imatrix(request.imatrix))
