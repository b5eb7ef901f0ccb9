"""The child-process side of perplexity/KLD: one pass over the chunks of a text.

Runs inside ``childproc.run_in_child``: loads the model into a ``LlamaSession``, decodes
``n_seq`` chunks per ``llama_decode`` and scores the second half of each chunk (see
``evaluate`` for the method). Per-token numbers go back to the parent, which aggregates them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .childproc import ChildContext
from .engine import LlamaSession
from .errors import InputError
from .logitcache import (
    BaseLogits,
    CacheKey,
    check_head,
    hidden_dtype,
    load_base_logits,
    output_head,
    save_base_logits,
)
from .progress import Progress, Stage


@dataclass(frozen=True)
class PassScores:
    """Per scored token, in chunk order; the KLD fields only when a base was given."""

    n_chunks: int
    seconds: float
    nll: np.ndarray
    nll_base: np.ndarray | None = None
    kld: np.ndarray | None = None
    p_diff: np.ndarray | None = None
    same_top: np.ndarray | None = None
    kld_exact: np.ndarray | None = None  # only in the two-model (exact) mode


def read_eval_text(path: Path) -> bytes:
    """The text as llama-perplexity's ``-f`` reads it: raw bytes, one final newline dropped."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read text ({e.strerror})") from None
    return raw[:-1] if raw.endswith(b"\n") else raw


def log_sum_exp(logits: np.ndarray) -> np.ndarray:
    """Per-row log Σ exp (float32 exps, float64 sum, as llama.cpp): log-prob = logit − lse."""
    mx = logits.max(axis=1)
    e = np.exp(logits - mx[:, None])
    return np.asarray(mx.astype(np.float64) + np.log(e.sum(axis=1, dtype=np.float64)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits.astype(np.float64) - log_sum_exp(logits)[:, None])


def kld_rows(base_logits: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """KLD(base‖Q) per row, every vocabulary entry counted; ``lq`` are Q's log-probs."""
    lb = base_logits - log_sum_exp(base_logits).astype(np.float32)[:, None]
    return np.asarray((np.exp(lb) * (lb - lq)).sum(axis=1, dtype=np.float64))


def _fmt_eta(seconds: float) -> str:
    s = round(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def child_pass(
    ctx: ChildContext,
    *,
    model: str,
    text_path: str,
    n_ctx: int,
    n_chunks: int | None,
    n_seq: int,
    threads: int,
    gpu_layers: int,
    base_out: str | None = None,
    base_in: str | None = None,
    model_hash: str = "",
    text_sha256: str = "",
    exact_base: str | None = None,
) -> PassScores:
    t0 = time.monotonic()
    text = read_eval_text(Path(text_path))
    ctx.progress(Progress(Stage.LOAD, 0, 1, f"loading {Path(model).name}"))
    with LlamaSession(model, n_ctx=n_ctx, n_seq=n_seq, threads=threads, gpu_layers=gpu_layers) as s:
        tokens = s.tokenize(text, add_special=True)
        base = None if base_in is None else load_base_logits(Path(base_in))
        if base is not None:
            n_chunk = base.key.n_chunks
            if base.key.n_vocab != s.n_vocab or not np.array_equal(
                tokens[: len(base.tokens)], base.tokens
            ):
                raise InputError(
                    f"{base_in}: base logits come from another model/vocab "
                    f"(vocab {base.key.n_vocab} vs {s.n_vocab}, or the text tokenizes "
                    f"differently with {Path(model).name})"
                )
        else:
            if len(tokens) < 2 * n_ctx:
                raise InputError(
                    f"{text_path}: text is too short: {len(tokens)} tokens, at least "
                    f"{2 * n_ctx} needed for a context of {n_ctx}"
                )
            n_max = len(tokens) // n_ctx
            n_chunk = n_max if not n_chunks or n_chunks < 0 else min(n_chunks, n_max)
        head = None
        if base_out is not None:
            head = output_head(Path(model))
            s.set_embeddings(True)
        ref = None
        if exact_base is not None:
            head = output_head(Path(exact_base))
            ref = LlamaSession(exact_base, n_ctx=n_ctx, n_seq=n_seq, threads=threads)
            ref.set_embeddings(True)
        try:
            scorer = _Scorer(model, s, ref, tokens, n_ctx, base, head)
            out = scorer.run(ctx, n_chunk, n_seq)
        finally:
            if ref is not None:
                ref.close()
        if base_out is not None and head is not None:
            key = CacheKey(model_hash, text_sha256, n_ctx, n_chunk, s.n_vocab)
            hidden = np.concatenate(scorer.hidden)
            bl = BaseLogits(key, tokens[: n_chunk * n_ctx].copy(), hidden, out["tok_lp"], head)
            save_base_logits(Path(base_out), bl)
        out.pop("tok_lp", None)
    return PassScores(n_chunks=n_chunk, seconds=time.monotonic() - t0, **out)


def _decode_group(
    s: LlamaSession, tokens: np.ndarray, i: int, n: int, n_ctx: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode chunks i..i+n-1 as sequences 0..n-1: logits (and hidden states when the
    session outputs them) of each chunk's scored rows, shaped (n, rows, ·)."""
    first = n_ctx // 2
    per = n_ctx - 1 - first
    toks = tokens[i * n_ctx : (i + n) * n_ctx].copy()
    if s.add_bos:
        toks[::n_ctx] = s.bos
    pos = np.tile(np.arange(n_ctx, dtype=np.int32), n)
    seq = np.repeat(np.arange(n, dtype=np.int32), n_ctx)
    s.clear()
    n_out = s.decode(toks, pos, seq.tolist(), pos >= first)
    rows = n_out // n  # n_ctx when hidden states are on (all tokens output), else n_ctx-first
    skip = rows - (n_ctx - first)
    logits = s.logits(n_out).reshape(n, rows, -1)[:, skip : skip + per]
    hidden = None
    if n_out == n * n_ctx:
        hidden = s.embeddings(n_out).reshape(n, rows, -1)[:, skip : skip + per]
    return logits, hidden


class _Scorer:
    """Scores chunk after chunk; keeps per-token columns (and hidden states for a cache)."""

    def __init__(
        self,
        model: str,
        s: LlamaSession,
        ref: LlamaSession | None,
        tokens: np.ndarray,
        n_ctx: int,
        base: BaseLogits | None,
        head: np.ndarray | None,
    ) -> None:
        self.model, self.s, self.ref, self.tokens, self.n_ctx = model, s, ref, tokens, n_ctx
        self.base = base
        self.head = head
        src = base.head if base is not None else head
        self.head_f32 = None if src is None else np.ascontiguousarray(src, dtype=np.float32)
        self.hdtype = None if head is None else hidden_dtype(head)
        self.cols: dict[str, list[np.ndarray]] = {}
        self.hidden: list[np.ndarray] = []

    def _add(self, name: str, v: np.ndarray) -> None:
        self.cols.setdefault(name, []).append(v)

    def run(self, ctx: ChildContext, n_chunk: int, n_seq: int) -> dict[str, Any]:
        t_start = time.monotonic()
        ctx.progress(Progress(Stage.EVAL, 0, n_chunk, "evaluating"))
        for i in range(0, n_chunk, n_seq):
            n = min(n_seq, n_chunk - i)
            logits, hidden = _decode_group(self.s, self.tokens, i, n, self.n_ctx)
            ref = (
                None if self.ref is None else _decode_group(self.ref, self.tokens, i, n, self.n_ctx)
            )
            for c in range(n):
                self._chunk(i + c, logits[c], None if hidden is None else hidden[c], ref, c)
            done = i + n
            el = time.monotonic() - t_start
            eta = el / done * (n_chunk - done)
            msg = f"chunk {done}/{n_chunk} · {el / done:.2f} s/chunk · ETA {_fmt_eta(eta)}"
            ctx.progress(Progress(Stage.EVAL, done, n_chunk, msg))
        out: dict[str, Any] = {}
        for k, v in self.cols.items():
            out[k] = np.concatenate(v).astype(bool if k == "same_top" else np.float32)
        return out

    def _chunk(
        self,
        chunk: int,
        x: np.ndarray,
        h: np.ndarray | None,
        ref: tuple[np.ndarray, np.ndarray | None] | None,
        c: int,
    ) -> None:
        n_ctx, first = self.n_ctx, self.n_ctx // 2
        per = n_ctx - 1 - first
        nxt = self.tokens[chunk * n_ctx + first + 1 : (chunk + 1) * n_ctx]
        lse = log_sum_exp(x)
        tok_lq = x[np.arange(per), nxt] - lse
        self._add("nll", -tok_lq)
        if h is not None and self.head_f32 is not None and self.hdtype is not None:
            hq = h.astype(self.hdtype)
            if chunk == 0:
                check_head(self.model, x, hq.astype(np.float32) @ self.head_f32.T)
            self.hidden.append(hq)
            self._add("tok_lp", tok_lq)
            return
        if ref is not None and self.head_f32 is not None and self.hdtype is not None:
            rx, rh = ref[0][c], ref[1]
            assert rh is not None
            base_logits = rh[c].astype(self.hdtype).astype(np.float32) @ self.head_f32.T
            tok_lp = rx[np.arange(per), nxt] - log_sum_exp(rx)
            lq = (x - lse.astype(np.float32)[:, None]).astype(np.float32)
            self._add("kld_exact", kld_rows(rx, lq))
        elif self.base is not None and self.head_f32 is not None:
            r = slice(chunk * per, (chunk + 1) * per)
            base_logits = self.base.logits(r, self.head_f32)
            tok_lp = self.base.tok_lp[r].astype(np.float64)
            lq = (x - lse.astype(np.float32)[:, None]).astype(np.float32)
        else:
            return
        self._add("nll_base", -tok_lp)
        self._add("kld", kld_rows(base_logits, lq))
        self._add("p_diff", np.exp(tok_lq) - np.exp(tok_lp))
        self._add("same_top", np.argmax(x, axis=1) == np.argmax(base_logits, axis=1))
