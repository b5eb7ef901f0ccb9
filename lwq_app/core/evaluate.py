"""Perplexity and KL-divergence jobs, computed exactly as llama-perplexity does.

The text is tokenized whole (BOS added only if the vocab asks for it, the file's last
newline dropped, as ``-f`` does), cut into ``n_ctx`` chunks; each chunk is decoded from an
empty cache (BOS replacing its first token when the vocab adds BOS) and the second half is
scored: token ``first+i+1`` from the logits at ``first+i``. ``n_seq`` chunks share one decode.
The base model's distribution is kept in a compact cache (``logitcache``) reused across
variants. Every job runs in a child process: progress per chunk, cancel kills it, and an
output file appears only complete (temp file + rename).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .childproc import run_in_child
from .errors import InputError
from .evalpass import PassScores
from .fileio import atomic_output, check_writable_dir
from .kldstats import KldStats, kld_stats, mean_and_uncertainty
from .logitcache import CacheKey, check_key, read_key
from .model import open_model
from .progress import CancelToken, ProgressSink, no_progress
from .project import model_hash

DEFAULT_CTX = 512
DEFAULT_BATCH = 2048  # llama-perplexity's default -b: n_seq = 2048 // n_ctx chunks per decode


@dataclass(frozen=True)
class PerplexityResult:
    """PPL of one model on one text, with llama-perplexity's ± and running per-chunk values."""

    model: str
    text_sha256: str
    n_ctx: int
    n_chunks: int
    count: int
    ppl: float
    ppl_unc: float
    chunk_ppl: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class KldResult:
    """A quantized model against its base: PPL of both and every KLD statistic."""

    perplexity: PerplexityResult
    stats: KldStats
    base_logits: str
    base_seconds: float
    cache_bytes_per_token: float


def text_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise InputError(f"{path}: cannot read text ({e.strerror})") from None


def default_cache_dir() -> Path:
    root = Path(os.environ.get("LWQ_CACHE_DIR", "~/.cache/lwq")).expanduser()
    return root / "base-logits"


def _n_seq(n_ctx: int, n_seq: int | None) -> int:
    return n_seq if n_seq else max(1, DEFAULT_BATCH // n_ctx)


def _pass(
    model: Path,
    text: Path,
    *,
    n_ctx: int,
    n_chunks: int | None,
    n_seq: int | None,
    threads: int,
    gpu_layers: int,
    progress: ProgressSink,
    cancel: CancelToken | None,
    **extra: Any,
) -> PassScores:
    if n_ctx < 16:
        raise InputError(f"context size {n_ctx} is too small (at least 16)")
    if not Path(model).is_file():
        raise InputError(f"{model}: no such model file")
    text_digest(Path(text))  # unreadable text fails here, naming the file
    result: PassScores = run_in_child(
        "lwq_app.core.evalpass:child_pass",
        {
            "model": str(model),
            "text_path": str(text),
            "n_ctx": n_ctx,
            "n_chunks": n_chunks,
            "n_seq": _n_seq(n_ctx, n_seq),
            "threads": threads,
            "gpu_layers": gpu_layers,
            **extra,
        },
        progress=progress,
        cancel=cancel,
    )
    return result


def _ppl_result(model: Path, digest: str, n_ctx: int, s: PassScores) -> PerplexityResult:
    nll = s.nll.astype(np.float64)
    mean, unc = mean_and_uncertainty(float(nll.sum()), float((nll**2).sum()), len(nll))
    per = n_ctx - 1 - n_ctx // 2
    run = np.cumsum(nll)[per - 1 :: per] / np.arange(1, s.n_chunks + 1) / per
    return PerplexityResult(
        model=str(model),
        text_sha256=digest,
        n_ctx=n_ctx,
        n_chunks=s.n_chunks,
        count=len(nll),
        ppl=float(np.exp(mean)),
        ppl_unc=float(np.exp(mean) * unc),
        chunk_ppl=tuple(float(x) for x in np.exp(run)),
        seconds=s.seconds,
    )


def perplexity(
    model: str | Path,
    text: str | Path,
    *,
    n_ctx: int = DEFAULT_CTX,
    n_chunks: int | None = None,
    n_seq: int | None = None,
    threads: int = 0,
    gpu_layers: int = 0,
    base_logits_out: str | Path | None = None,
    full_logits: bool = False,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> PerplexityResult:
    """PPL of ``model`` on ``text``; with ``base_logits_out`` also write its base-logits
    cache: compact (hidden states) when lwq reproduces the model's output head, else (or
    with ``full_logits``) every log-prob."""
    model_p, text_p = Path(model), Path(text)
    digest = text_digest(text_p)
    extra: dict[str, Any] = {}
    if base_logits_out is None:
        scores = _pass(
            model_p, text_p, n_ctx=n_ctx, n_chunks=n_chunks, n_seq=n_seq, threads=threads,
            gpu_layers=gpu_layers, progress=progress, cancel=cancel,
        )  # fmt: skip
        return _ppl_result(model_p, digest, n_ctx, scores)
    out = Path(base_logits_out)
    check_writable_dir(out)
    with atomic_output(out) as tmp:
        extra = {
            "base_out": str(tmp),
            "model_hash": model_hash(model_p),
            "text_sha256": digest,
            "full_logits": full_logits,
        }
        scores = _pass(
            model_p, text_p, n_ctx=n_ctx, n_chunks=n_chunks, n_seq=n_seq, threads=threads,
            gpu_layers=gpu_layers, progress=progress, cancel=cancel, **extra,
        )  # fmt: skip
    return _ppl_result(model_p, digest, n_ctx, scores)


def kl_divergence(
    model: str | Path,
    text: str | Path,
    base_logits: str | Path,
    *,
    n_ctx: int = DEFAULT_CTX,
    n_chunks: int | None = None,
    n_seq: int | None = None,
    threads: int = 0,
    gpu_layers: int = 0,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    base_seconds: float = 0.0,
) -> KldResult:
    """PPL and KLD statistics of ``model`` against a base-logits cache made on ``text``."""
    model_p, text_p, cache = Path(model), Path(text), Path(base_logits)
    digest = text_digest(text_p)
    got = read_key(cache)
    want = CacheKey("", digest, n_ctx, n_chunks or got.n_chunks, open_model(model_p).n_vocab)
    check_key(cache, got, want)
    scores = _pass(
        model_p, text_p, n_ctx=n_ctx, n_chunks=got.n_chunks, n_seq=n_seq, threads=threads,
        gpu_layers=gpu_layers, progress=progress, cancel=cancel, base_in=str(cache),
    )  # fmt: skip
    assert scores.kld is not None and scores.nll_base is not None
    assert scores.p_diff is not None and scores.same_top is not None
    stats = kld_stats(scores.nll, scores.nll_base, scores.kld, scores.p_diff, scores.same_top)
    return KldResult(
        perplexity=_ppl_result(model_p, digest, n_ctx, scores),
        stats=stats,
        base_logits=str(cache),
        base_seconds=base_seconds,
        cache_bytes_per_token=_bytes_per_token(cache, got),
    )


def cached_base_logits(
    base: str | Path,
    text: str | Path,
    *,
    n_ctx: int = DEFAULT_CTX,
    n_chunks: int | None = None,
    cache_dir: str | Path | None = None,
    **kw: Any,
) -> tuple[Path, float]:
    """The cache file for (base model data, text, ctx, chunks), computed only if missing.

    Returns the path and the seconds spent computing it (0 when reused)."""
    base_p = Path(base)
    info = open_model(base_p)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = CacheKey(model_hash(info), text_digest(Path(text)), n_ctx, n_chunks or 0, info.n_vocab)
    path = folder / f"{key.file_stem()}.npz"
    if path.exists():
        got = read_key(path)
        if got == replace(key, n_chunks=n_chunks or got.n_chunks):
            return path, 0.0
    res = perplexity(base_p, text, n_ctx=n_ctx, n_chunks=n_chunks, base_logits_out=path, **kw)
    return path, res.seconds


def evaluate(
    model: str | Path,
    text: str | Path,
    *,
    base: str | Path | None = None,
    base_logits: str | Path | None = None,
    cache_dir: str | Path | None = None,
    n_ctx: int = DEFAULT_CTX,
    n_chunks: int | None = None,
    **kw: Any,
) -> KldResult | PerplexityResult:
    """``lwq eval``: PPL alone, or KLD against ``base`` (cached) or a ``base_logits`` file."""
    if base is not None and base_logits is not None:
        raise InputError("give either a base model or a base-logits file, not both")
    if base is None and base_logits is None:
        return perplexity(model, text, n_ctx=n_ctx, n_chunks=n_chunks, **kw)
    seconds = 0.0
    if base is not None:
        base_logits, seconds = cached_base_logits(
            base, text, n_ctx=n_ctx, n_chunks=n_chunks, cache_dir=cache_dir, **kw
        )
    assert base_logits is not None
    return kl_divergence(
        model, text, base_logits, n_ctx=n_ctx, n_chunks=n_chunks, base_seconds=seconds, **kw
    )


def compare_exact(
    model: str | Path,
    base: str | Path,
    text: str | Path,
    *,
    n_ctx: int = DEFAULT_CTX,
    n_chunks: int | None = None,
    **kw: Any,
) -> tuple[KldStats, KldStats]:
    """KLD statistics from full base logits and from the compact cache, in one pass.

    Both models are loaded side by side; the base's logits are taken both as llama.cpp
    computed them and as the cache recomputes them from F16 hidden states. This is how the
    compact format's error is measured. Returns (exact, compact)."""
    scores = _pass(
        Path(model), Path(text), n_ctx=n_ctx, n_chunks=n_chunks, n_seq=kw.pop("n_seq", None),
        threads=kw.pop("threads", 0), gpu_layers=kw.pop("gpu_layers", 0),
        progress=kw.pop("progress", no_progress), cancel=kw.pop("cancel", None),
        exact_base=str(base),
    )  # fmt: skip
    assert scores.kld is not None and scores.kld_exact is not None
    assert scores.nll_base is not None and scores.p_diff is not None
    assert scores.same_top is not None
    args = (scores.nll, scores.nll_base, scores.kld, scores.p_diff, scores.same_top)
    exact = kld_stats(*args[:2], scores.kld_exact, *args[3:])
    return exact, kld_stats(*args)


def _bytes_per_token(path: Path, key: CacheKey) -> float:
    """File bytes per scored token, the once-per-file output head included."""
    rows = key.n_chunks * (key.n_ctx - 1 - key.n_ctx // 2)
    return path.stat().st_size / max(1, rows)
