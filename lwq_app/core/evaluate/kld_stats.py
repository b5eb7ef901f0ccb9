"""llama-perplexity's KL-divergence statistics, from per-token arrays.

Formulas are those of ``kl_divergence()`` in llama.cpp's ``tools/perplexity/perplexity.cpp``:
mean ± uncertainty from sums of values and squares (uncertainty 0 for ≤ 10 values), the
covariance of ln PPL(Q) and ln PPL(base), percentiles by linear interpolation between sorted
values, RMS Δp from the mean of Δp² and Δp⁴, and a binomial interval for the same-top rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PERCENTILES = (99.9, 99.0, 95.0, 90.0, 10.0, 5.0, 1.0, 0.1)
DP_PERCENTILES = (99.9, 99.0, 95.0, 90.0, 75.0, 25.0, 10.0, 5.0, 1.0, 0.1)


@dataclass(frozen=True)
class Distribution:
    """Max, min, median and llama.cpp's percentiles of one per-token quantity."""

    maximum: float
    minimum: float
    median: float
    #: (label, value) in llama.cpp's order, labels as it prints them ("99.9", "1.0")
    percentiles: tuple[tuple[str, float], ...]

    def at(self, label: str) -> float:
        """The percentile labelled ``label`` ("99.0"); KeyError if it is not one of them."""
        for name, value in self.percentiles:
            if name == label:
                return value
        raise KeyError(label)

    def to_json(self) -> dict[str, Any]:
        return {
            "maximum": self.maximum,
            "minimum": self.minimum,
            "median": self.median,
            "percentiles": dict(self.percentiles),
        }


@dataclass(frozen=True)
class KldStats:
    """Everything llama-perplexity prints after a ``--kl-divergence`` run."""

    count: int
    ppl: float
    ppl_unc: float
    ppl_base: float
    ppl_base_unc: float
    cor: float
    ln_ratio: float
    ln_ratio_unc: float
    ratio: float
    ratio_unc: float
    diff: float
    diff_unc: float
    kld: float
    kld_unc: float
    kld_dist: Distribution
    dp: float
    dp_unc: float
    dp_dist: Distribution
    rms_dp: float
    rms_dp_unc: float
    same_top: float
    same_top_unc: float

    def to_json(self) -> dict[str, Any]:
        """The statistics as ``lwq eval --json`` and the results store write them."""
        d = asdict(self)
        d["kld_dist"], d["dp_dist"] = self.kld_dist.to_json(), self.dp_dist.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KldStats:
        """The inverse of ``to_json`` (``KeyError``/``TypeError`` for a malformed dict)."""
        fields = {k: d[k] for k in cls.__dataclass_fields__}
        for k in ("kld_dist", "dp_dist"):
            dist = fields[k]
            fields[k] = Distribution(
                float(dist["maximum"]),
                float(dist["minimum"]),
                float(dist["median"]),
                tuple((str(q), float(v)) for q, v in dist["percentiles"].items()),
            )
        return cls(**fields)


def mean_and_uncertainty(s: float, s2: float, n: int) -> tuple[float, float]:
    if n < 1:
        return 0.0, 0.0
    f = s / n
    df = s2 / n - f * f
    return f, math.sqrt(df / (n - 1)) if df > 0 and n > 10 else 0.0


def _covariance(a: float, b: float, ab: float, n: int) -> float:
    if n < 10:
        return 0.0
    return (ab / n - (a / n) * (b / n)) / (n - 1)


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile: linear interpolation at fraction·(n-1) of sorted values."""
    v = sorted_values
    if fraction <= 0:
        return float(v[0])
    if fraction >= 1:
        return float(v[-1])
    p = np.float32(fraction) * np.float32(len(v) - 1)
    ip = int(p)
    p -= ip
    return float((1 - p) * v[ip] + p * v[min(ip + 1, len(v) - 1)])


def distribution(values: np.ndarray, points: tuple[float, ...]) -> Distribution:
    v = np.sort(values.astype(np.float32))
    n = len(v)
    med = 0.5 * (v[n // 2] + v[n // 2 - 1]) if n % 2 == 0 else v[n // 2]
    return Distribution(
        maximum=float(v[-1]),
        minimum=float(v[0]),
        median=float(med),
        percentiles=tuple((f"{q:.1f}", percentile(v, q / 100)) for q in points),
    )


def kld_stats(
    nll: np.ndarray, nll_base: np.ndarray, kld: np.ndarray, p_diff: np.ndarray, same_top: np.ndarray
) -> KldStats:
    """Aggregate per-token values (all arrays of the same length) into ``KldStats``."""
    n = len(nll)
    nll64, base64 = nll.astype(np.float64), nll_base.astype(np.float64)
    lp, lp_unc = mean_and_uncertainty(float(nll64.sum()), float((nll64**2).sum()), n)
    lb, lb_unc = mean_and_uncertainty(float(base64.sum()), float((base64**2).sum()), n)
    cov = _covariance(float(nll64.sum()), float(base64.sum()), float((nll64 * base64).sum()), n)
    ppl, ppl_b = math.exp(lp), math.exp(lb)
    ln_ratio = lp - lb
    ln_ratio_unc = math.sqrt(max(0.0, lp_unc**2 + lb_unc**2 - 2.0 * cov))
    ratio = math.exp(ln_ratio)
    ppl_unc, ppl_b_unc = ppl * lp_unc, ppl_b * lb_unc
    k64, d64 = kld.astype(np.float64), p_diff.astype(np.float64)
    k_mean, k_unc = mean_and_uncertainty(float(k64.sum()), float((k64**2).sum()), n)
    d_mean, d_unc = mean_and_uncertainty(float(d64.sum()), float((d64**2).sum()), n)
    mse, mse_unc = mean_and_uncertainty(float((d64**2).sum()), float((d64**4).sum()), n)
    rms = math.sqrt(mse)
    top = float(np.count_nonzero(same_top)) / n
    denom = lp_unc * lb_unc
    return KldStats(
        count=n,
        ppl=ppl,
        ppl_unc=ppl_unc,
        ppl_base=ppl_b,
        ppl_base_unc=ppl_b_unc,
        cor=cov / denom if denom > 0 else 0.0,
        ln_ratio=ln_ratio,
        ln_ratio_unc=ln_ratio_unc,
        ratio=ratio,
        ratio_unc=ratio * ln_ratio_unc,
        diff=ppl - ppl_b,
        diff_unc=math.sqrt(max(0.0, ppl_unc**2 + ppl_b_unc**2 - 2.0 * ppl * ppl_b * cov)),
        kld=k_mean,
        kld_unc=k_unc,
        kld_dist=distribution(kld, PERCENTILES),
        dp=d_mean,
        dp_unc=d_unc,
        dp_dist=distribution(p_diff, DP_PERCENTILES),
        rms_dp=rms,
        rms_dp_unc=0.5 / rms * mse_unc if rms > 0 else 0.0,
        same_top=top,
        same_top_unc=math.sqrt(top * (1 - top) / (n - 1)) if n > 1 else 0.0,
    )


def format_kld_report(s: KldStats) -> str:
    """The statistics block in llama-perplexity's layout (for logs and comparisons)."""
    k, d = s.kld_dist, s.dp_dist
    lines = [
        "====== Perplexity statistics ======",
        f"Mean PPL(Q)                   : {s.ppl:10.6f} ± {s.ppl_unc:10.6f}",
        f"Mean PPL(base)                : {s.ppl_base:10.6f} ± {s.ppl_base_unc:10.6f}",
        f"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * s.cor:6.2f}%",
        f"Mean ln(PPL(Q)/PPL(base))     : {s.ln_ratio:10.6f} ± {s.ln_ratio_unc:10.6f}",
        f"Mean PPL(Q)/PPL(base)         : {s.ratio:10.6f} ± {s.ratio_unc:10.6f}",
        f"Mean PPL(Q)-PPL(base)         : {s.diff:10.6f} ± {s.diff_unc:10.6f}",
        "",
        "====== KL divergence statistics ======",
        f"Mean    KLD: {s.kld:10.6f} ± {s.kld_unc:10.6f}",
        f"Maximum KLD: {k.maximum:10.6f}",
        *[f"{q:>5}%   KLD: {v:10.6f}" for q, v in k.percentiles[:4]],
        f"Median  KLD: {k.median:10.6f}",
        *[f"{q:>5}%   KLD: {v:10.6f}" for q, v in k.percentiles[4:]],
        f"Minimum KLD: {k.minimum:10.6f}",
        "",
        "====== Token probability statistics ======",
        f"Mean    Δp: {100 * s.dp:6.3f} ± {100 * s.dp_unc:5.3f} %",
        f"Maximum Δp: {100 * d.maximum:6.3f}%",
        *[f"{q:>5}%   Δp: {100 * v:6.3f}%" for q, v in d.percentiles[:5]],
        f"Median  Δp: {100 * d.median:6.3f}%",
        *[f"{q:>5}%   Δp: {100 * v:6.3f}%" for q, v in d.percentiles[5:]],
        f"Minimum Δp: {100 * d.minimum:6.3f}%",
        f"RMS Δp    : {100 * s.rms_dp:6.3f} ± {100 * s.rms_dp_unc:5.3f} %",
        f"Same top p: {100 * s.same_top:6.3f} ± {100 * s.same_top_unc:5.3f} %",
    ]
    return "\n".join(lines) + "\n"
