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

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.atomic import atomic_output, check_writable_dir
from ..jobs.boundary import public_job
from ..jobs.child_runner import run_in_child
from ..jobs.errors import InputError, ModelFileError, OutputError
from ..jobs.paths import cache_dir
from ..jobs.progress import (
    CancelToken,
    Phase,
    Phases,
    Progress,
    ProgressSink,
    check,
    no_progress,
)
from ..modelfile.hashing import model_hash, sha256_file
from ..modelfile.inventory import ModelInfo, open_model
from .kld_stats import KldStats, kld_stats, mean_and_uncertainty
from .logit_cache import CacheKey, check_key, read_key
from .perplexity_child import PassScores

DEFAULT_CTX = 512
DEFAULT_BATCH = 2048  # llama-perplexity's default -b: n_seq = 2048 // n_ctx chunks per decode


@dataclass(frozen=True)
class EvalRequest:
    """``lwq eval``: PPL of ``model`` on ``text``; with ``base`` (a model, its logits cached in
    ``cache_dir``) or ``base_logits`` (a cache file made before) also every KLD statistic."""

    model: Path
    text: Path
    base: Path | None = None
    base_logits: Path | None = None
    cache_dir: Path | None = None  # None: lwq's cache folder (``default_cache_dir()``)
    n_ctx: int = DEFAULT_CTX
    n_chunks: int | None = None  # None: every chunk of the text
    n_seq: int | None = None  # chunks per decode; None: llama-perplexity's 2048 // n_ctx
    threads: int = 0
    gpu_layers: int = 0


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

    def to_json(self) -> dict[str, Any]:
        """The result as ``lwq eval --json`` prints it (and the results store keeps it)."""
        d = asdict(self)
        d["chunk_ppl"] = list(self.chunk_ppl)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PerplexityResult:
        fields = {k: d[k] for k in cls.__dataclass_fields__}
        fields["chunk_ppl"] = tuple(float(x) for x in fields["chunk_ppl"])
        return cls(**fields)


@dataclass(frozen=True)
class KldResult:
    """A quantized model against its base: PPL of both and every KLD statistic."""

    perplexity: PerplexityResult
    stats: KldStats
    base_logits: str
    base_seconds: float
    cache_bytes_per_token: float

    def to_json(self) -> dict[str, Any]:
        """The result as ``lwq eval --json`` prints it (and the results store keeps it)."""
        return {
            "perplexity": self.perplexity.to_json(),
            "stats": self.stats.to_json(),
            "base_logits": self.base_logits,
            "base_seconds": self.base_seconds,
            "cache_bytes_per_token": self.cache_bytes_per_token,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KldResult:
        return cls(
            perplexity=PerplexityResult.from_json(d["perplexity"]),
            stats=KldStats.from_json(d["stats"]),
            base_logits=str(d["base_logits"]),
            base_seconds=float(d["base_seconds"]),
            cache_bytes_per_token=float(d["cache_bytes_per_token"]),
        )


def text_digest(path: Path) -> str:
    """SHA-256 of an evaluation text; ``InputError`` naming the file if it cannot be read."""
    return sha256_file(path)


def default_cache_dir() -> Path:
    return cache_dir("base-logits")


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
        "lwq_app.core.evaluate.perplexity_child:child_pass",
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
        job="eval",
        subject=model,
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
    if base_logits_out is None:
        digest = text_digest(text_p)
        scores = _pass(
            model_p, text_p, n_ctx=n_ctx, n_chunks=n_chunks, n_seq=n_seq, threads=threads,
            gpu_layers=gpu_layers, progress=progress, cancel=cancel,
        )  # fmt: skip
        return _ppl_result(model_p, digest, n_ctx, scores)
    return _base_pass(
        model_p, text_p, Path(base_logits_out), model_hash(model_p), n_ctx=n_ctx,
        n_chunks=n_chunks, n_seq=n_seq, threads=threads, gpu_layers=gpu_layers,
        progress=progress, cancel=cancel, full_logits=full_logits,
    )  # fmt: skip


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


def _cache_file(folder: Path, key: CacheKey, n_chunks: int | None) -> tuple[Path, bool]:
    """The cache file for ``key`` and whether it holds what is asked for already."""
    path = folder / f"{key.file_stem()}.npz"
    if path.exists():
        got = read_key(path)
        if got == replace(key, n_chunks=n_chunks or got.n_chunks):
            return path, True
    return path, False


def _base_pass(
    base: Path,
    text: Path,
    out: Path,
    base_hash: str,
    *,
    n_ctx: int,
    n_chunks: int | None,
    n_seq: int | None = None,
    threads: int = 0,
    gpu_layers: int = 0,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    full_logits: bool = False,
) -> PerplexityResult:
    """The base model's pass over ``text``, writing its base-logits cache to ``out``."""
    digest = text_digest(text)
    check_writable_dir(out)
    with atomic_output(out) as tmp:
        extra: dict[str, Any] = {
            "base_out": str(tmp),
            "model_hash": base_hash,
            "text_sha256": digest,
            "full_logits": full_logits,
        }
        scores = _pass(
            base, text, n_ctx=n_ctx, n_chunks=n_chunks, n_seq=n_seq, threads=threads,
            gpu_layers=gpu_layers, progress=progress, cancel=cancel, **extra,
        )  # fmt: skip
    return _ppl_result(base, digest, n_ctx, scores)


def cached_base_logits(
    base: str | Path,
    text: str | Path,
    *,
    n_ctx: int = DEFAULT_CTX,
    n_chunks: int | None = None,
    cache_dir: str | Path | None = None,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    **kw: Any,
) -> tuple[Path, float]:
    """The cache file for (base model data, text, ctx, chunks), computed only if missing.

    Returns the path and the seconds spent computing it (0 when reused)."""
    base_p = Path(base)
    info = open_model(base_p)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = CacheKey(model_hash(info), text_digest(Path(text)), n_ctx, n_chunks or 0, info.n_vocab)
    path, ready = _cache_file(folder, key, n_chunks)
    if ready:
        return path, 0.0
    res = _base_pass(
        base_p, Path(text), path, key.model_hash, n_ctx=n_ctx, n_chunks=n_chunks,
        progress=progress, cancel=cancel, **kw,
    )  # fmt: skip
    return path, res.seconds


def _relabel(sink: ProgressSink, phase: Phase) -> ProgressSink:
    """``sink`` with the child's ``EVAL`` events reported as ``phase``."""

    def emit(p: Progress) -> None:
        sink(replace(p, phase=phase) if p.phase is Phase.EVAL else p)

    return emit


def _check_request(r: EvalRequest) -> tuple[ModelInfo, ModelInfo | None]:
    """Every input of ``r`` that can be checked without llama.cpp, each error naming its file."""
    if r.base is not None and r.base_logits is not None:
        raise InputError("give either a base model or a base-logits file, not both")
    if r.n_ctx < 16:
        raise InputError(f"context size {r.n_ctx} is too small (at least 16)")
    info = open_model(r.model)
    text_digest(r.text)
    base = None
    if r.base is not None:
        base = open_model(r.base)
        if base.n_vocab != info.n_vocab:
            raise ModelFileError(
                f"{r.base}: the base model has another vocabulary ({base.n_vocab} tokens, "
                f"{info.n_vocab} in {r.model})"
            )
    if r.base_logits is not None:
        got = read_key(r.base_logits)
        if got.n_vocab != info.n_vocab:
            raise InputError(
                f"{r.base_logits}: base logits come from another model/vocab "
                f"(vocab {got.n_vocab} vs {info.n_vocab} in {r.model})"
            )
    return info, base


@public_job("eval")
def evaluate(
    request: EvalRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> KldResult | PerplexityResult:
    """``lwq eval``: PPL alone, or KLD against ``base`` (cached) or a ``base_logits`` file.

    Where the base's logits must first be computed, the job reports one monotone progress
    over ``Phase.HASH`` (the base's tensor-data hash, which keys the cache), ``Phase.BASE``
    (the base model's pass, writing the cache) and ``Phase.EVAL``."""
    check(cancel)
    r = request
    _info, base_info = _check_request(r)
    kw: dict[str, Any] = {
        "n_seq": r.n_seq, "threads": r.threads, "gpu_layers": r.gpu_layers, "cancel": cancel,
    }  # fmt: skip
    if r.base is None and r.base_logits is None:
        return perplexity(
            r.model, r.text, n_ctx=r.n_ctx, n_chunks=r.n_chunks, progress=progress, **kw
        )
    if r.base_logits is not None:
        return kl_divergence(
            r.model, r.text, r.base_logits, n_ctx=r.n_ctx, n_chunks=r.n_chunks,
            progress=progress, **kw,
        )  # fmt: skip
    assert r.base is not None and base_info is not None
    phases = Phases(progress, [(Phase.HASH, 1), (Phase.BASE, 10), (Phase.EVAL, 10)])
    folder = r.cache_dir if r.cache_dir is not None else default_cache_dir()
    base_hash = model_hash(base_info, progress=phases.sink(Phase.HASH), cancel=cancel)
    check(cancel)
    key = CacheKey(base_hash, text_digest(r.text), r.n_ctx, r.n_chunks or 0, base_info.n_vocab)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{folder}: cannot create the base-logits cache ({e.strerror})") from None
    path, ready = _cache_file(folder, key, r.n_chunks)
    seconds = 0.0
    if not ready:
        seconds = _base_pass(
            r.base, r.text, path, base_hash, n_ctx=r.n_ctx, n_chunks=r.n_chunks,
            progress=_relabel(phases.sink(Phase.BASE), Phase.BASE), **kw,
        ).seconds  # fmt: skip
    return kl_divergence(
        r.model, r.text, path, n_ctx=r.n_ctx, n_chunks=r.n_chunks, base_seconds=seconds,
        progress=phases.sink(Phase.EVAL), **kw,
    )  # fmt: skip


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
