"""The child-process side of perplexity/KLD: one pass over the chunks of a text.

Runs inside ``jobs.child_runner.run_in_child``: loads the model into a ``LlamaSession``, decodes
``n_seq`` chunks per ``llama_decode`` and scores the second half of each chunk (see
``perplexity`` for the method). Per-token numbers go back to the parent, which aggregates them.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import LlamaSession
from ..engine.graph import HiddenCapture
from ..jobs.child_runner import ChildContext
from ..jobs.errors import InputError, JobFailed
from ..jobs.progress import Phase, Progress
from .logit_cache import (
    HEAD_TOLERANCE,
    BaseLogits,
    CacheKey,
    check_head,
    head_error,
    hidden_dtype,
    load_base_logits,
    output_head,
    quantize_logprobs,
    save_base_logits,
)


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


PROBE_BYTES = 16384  # text start tokenized to check a base cache's tokens against this model
PROBE_MARGIN = 32  # tokens at the probe's cut that may differ from the whole text's
HEAD_SLICES = 8  # vocabulary slices of a head matmul (each streamed once, by one thread)
ROW_BLOCK = 16  # rows per scoring job: two 16 × n_vocab float32 blocks stay in cache


@dataclass(frozen=True)
class RowScores:
    """Per row of logits: log Σ exp of Q and, against a base, KLD(base‖Q), base log Σ exp and
    whether both put the same token on top."""

    lse: np.ndarray
    kld: np.ndarray | None = None
    lse_base: np.ndarray | None = None
    same_top: np.ndarray | None = None


def head_logits(
    hidden: np.ndarray, head: np.ndarray, pool: ThreadPoolExecutor | None = None
) -> np.ndarray:
    """``hidden · headᵀ`` in float32, vocabulary slices spread over ``pool``'s threads."""
    h = np.ascontiguousarray(hidden, dtype=np.float32)
    if pool is None:
        return np.asarray(h @ head.T)
    out = np.empty((len(h), len(head)), dtype=np.float32)
    step = -(-len(head) // HEAD_SLICES)

    def job(v: int) -> None:
        np.matmul(h, head[v : v + step].T, out=out[:, v : v + step])

    list(pool.map(job, range(0, len(head), step)))
    return out


def score_rows(
    xq: np.ndarray,
    xb: np.ndarray | None = None,
    pool: ThreadPoolExecutor | None = None,
    *,
    hidden: np.ndarray | None = None,
    head: np.ndarray | None = None,
) -> RowScores:
    """Score logit rows in one fused pass per block of rows, the blocks spread over ``pool``.

    The base is ``xb``, or logits recomputed as ``hidden · headᵀ`` (the compact cache), the
    matmul split over the pool by vocabulary slices (each thread streams its slice of the
    head once; BLAS is single-threaded in the child, see ``jobs.child_runner``).

    With ``p = softmax(xb)``, ``KLD = Σ p·(xb − xq) − (Lb − Lq)`` where ``L`` is log Σ exp:
    two exponentials per entry, sums in float64. This is more exact than subtracting two
    float32 log-softmaxes (checked against a float64 reference in the tests)."""
    n = len(xq)
    if xb is None and hidden is not None and head is not None:
        xb = head_logits(hidden, head, pool)
    based = xb is not None
    lse = np.empty(n)
    kld = np.empty(n) if based else None
    lse_b = np.empty(n) if based else None
    same = np.empty(n, dtype=bool) if based else None

    def job(r: int) -> None:
        q = xq[r : r + ROW_BLOCK]
        rows = np.arange(len(q))
        iq = q.argmax(axis=1)
        mq = q[rows, iq]
        lq = mq + np.log(np.exp(q - mq[:, None]).sum(axis=1, dtype=np.float64))
        lse[r : r + ROW_BLOCK] = lq
        if kld is None or lse_b is None or same is None:
            return
        assert xb is not None
        b = xb[r : r + ROW_BLOCK]
        ib = b.argmax(axis=1)
        mb = b[rows, ib]
        e = np.exp(b - mb[:, None])
        sb = e.sum(axis=1, dtype=np.float64)
        lb = mb + np.log(sb)
        dot = np.einsum("ij,ij->i", e, b - q, dtype=np.float64)
        kld[r : r + ROW_BLOCK] = dot / sb - lb + lq
        lse_b[r : r + ROW_BLOCK] = lb
        same[r : r + ROW_BLOCK] = iq == ib

    starts = range(0, n, ROW_BLOCK)
    if pool is None:
        for r in starts:
            job(r)
    else:
        list(pool.map(job, starts))
    return RowScores(lse, kld, lse_b, same)


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
    full_logits: bool = False,
) -> PassScores:
    t0 = time.monotonic()
    text = read_eval_text(Path(text_path))
    name = Path(model).name
    ctx.progress(Progress(Phase.LOAD, 0, 1, name))
    loaded = [0.0]

    def on_load(f: float) -> bool:
        """llama.cpp's load progress as 0–0.8 of the phase, in steps of a tenth; the rest is
        the tokenizing and the output head (a second or more on a slow disk: the phase
        reports as it goes)."""
        if f - loaded[0] >= 0.1 and f < 1.0:
            loaded[0] = f
            ctx.progress(Progress(Phase.LOAD, 0.8 * f, 1, name))
        return True

    capture = HiddenCapture() if base_out is not None and not full_logits else None
    with LlamaSession(
        model, n_ctx=n_ctx, n_seq=n_seq, threads=threads, gpu_layers=gpu_layers,
        cb_eval=None if capture is None else capture.callback, on_load=on_load,
    ) as s:  # fmt: skip
        ctx.progress(Progress(Phase.LOAD, 0.8, 1, f"{name}: tokenizing"))
        base = None if base_in is None else load_base_logits(Path(base_in))
        if base is not None:
            # llama-perplexity's KLD pass reads the tokens from the base file; so does lwq,
            # after checking that this model tokenizes the text's start the same way
            n_chunk = base.key.n_chunks
            probe = s.tokenize(text[:PROBE_BYTES], add_special=True)[:-PROBE_MARGIN]
            m = min(len(probe), len(base.tokens))
            if base.key.n_vocab != s.n_vocab or not np.array_equal(probe[:m], base.tokens[:m]):
                raise InputError(
                    f"{base_in}: base logits come from another model/vocab "
                    f"(vocab {base.key.n_vocab} vs {s.n_vocab}, or the text tokenizes "
                    f"differently with {Path(model).name})"
                )
            tokens = base.tokens
        else:
            tokens = s.tokenize(text, add_special=True)
            if len(tokens) < 2 * n_ctx:
                raise InputError(
                    f"{text_path}: text is too short: {len(tokens)} tokens, at least "
                    f"{2 * n_ctx} needed for a context of {n_ctx}"
                )
            n_max = len(tokens) // n_ctx
            n_chunk = n_max if not n_chunks or n_chunks < 0 else min(n_chunks, n_max)
        ctx.progress(Progress(Phase.LOAD, 0.9, 1, f"{name}: output head"))
        head = None
        store = None
        if base_out is not None:
            store = "full" if full_logits else "compact"
            if store == "compact":
                try:
                    head = output_head(Path(model))
                except JobFailed:  # e.g. an output bias: keep every log-prob instead
                    store, capture = "full", None
        ref = None
        if exact_base is not None:
            head = output_head(Path(exact_base))
            ref = LlamaSession(exact_base, n_ctx=n_ctx, n_seq=n_seq, threads=threads)
            ref.set_embeddings(True)
        try:
            scorer = _Scorer(model, s, ref, tokens, n_ctx, base, head, capture, store)
            out = scorer.run(ctx, n_chunk, n_seq)
        finally:
            if ref is not None:
                ref.close()
        if base_out is not None:
            key = CacheKey(model_hash, text_sha256, n_ctx, n_chunk, s.n_vocab)
            toks = tokens[: n_chunk * n_ctx].copy()
            if scorer.store == "full":
                q, mn, step = (np.concatenate(v) for v in zip(*scorer.full, strict=True))
                none = np.zeros((len(q), 0), np.float16)
                bl = BaseLogits(key, toks, none, out["tok_lp"], none[:0], q, mn, step)
            else:
                assert head is not None
                bl = BaseLogits(key, toks, np.concatenate(scorer.hidden), out["tok_lp"], head)
            save_base_logits(Path(base_out), bl)
        out.pop("tok_lp", None)
    return PassScores(n_chunks=n_chunk, seconds=time.monotonic() - t0, **out)


N_PROBE = 16  # vocabulary entries used to match captured hidden rows to logit rows
BATCH_ORDER_TOLERANCE = 1e-2  # matched fingerprint distance / fingerprint norm


def batch_order(hidden: np.ndarray, logits: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Indices putting hidden rows captured in ubatch order into the batch order of ``logits``.

    With several sequences per decode llama.cpp splits a batch into ubatches that interleave
    the sequences (``split_equal``) and restores the batch order of the logits only; captured
    rows keep the compute order. Each row is matched by its logits at ``N_PROBE`` vocabulary
    entries (``hidden · head[probe]ᵀ`` against ``logits[:, probe]``), which does not depend
    on how llama.cpp splits; a row without a close match is an error."""
    probe = np.linspace(0, len(head) - 1, N_PROBE).astype(np.int64)
    fp_h = hidden.astype(np.float32) @ head[probe].astype(np.float32).T
    fp_x = np.asarray(logits[:, probe], dtype=np.float32)
    d = (fp_x**2).sum(1)[:, None] - 2 * fp_x @ fp_h.T + (fp_h**2).sum(1)[None, :]
    order = d.argmin(axis=1)
    # identical rows (a passage repeated at the same position of two chunks) may share a
    # match; what must hold is that every row has a match as close as recomputation gets
    miss = np.sqrt(np.maximum(d[np.arange(len(d)), order], 0))
    scale = np.sqrt((fp_x**2).sum(1)) + 1e-6
    if np.any(miss > BATCH_ORDER_TOLERANCE * scale):
        raise JobFailed("captured hidden states do not match the logits")
    return np.asarray(order)


def _decode_group(
    s: LlamaSession,
    tokens: np.ndarray,
    i: int,
    n: int,
    n_ctx: int,
    capture: HiddenCapture | None = None,
    head: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode chunks i..i+n-1 as sequences 0..n-1: logits (and hidden states when captured
    or output) of each chunk's scored rows, shaped (n, rows, ·).

    The logits are a view of llama.cpp's buffer: use them before the session's next decode."""
    first = n_ctx // 2
    per = n_ctx - 1 - first
    toks = tokens[i * n_ctx : (i + n) * n_ctx].copy()
    if s.add_bos:
        toks[::n_ctx] = s.bos
    pos = np.tile(np.arange(n_ctx, dtype=np.int32), n)
    seq = np.repeat(np.arange(n, dtype=np.int32), n_ctx)
    s.clear()
    n_out = s.decode(toks, pos, seq.tolist(), pos >= first)
    rows = n_out // n  # n_ctx when hidden states are output (all tokens), else n_ctx-first
    skip = rows - (n_ctx - first)
    logits = s.logits(n_out, copy=False).reshape(n, rows, -1)[:, skip : skip + per]
    hidden = None
    if capture is not None and head is not None:
        got = capture.take()  # None or a row mismatch: the caller falls back to full logits
        if got is not None and len(got) == n_out:
            with contextlib.suppress(JobFailed):
                order = batch_order(got, s.logits(n_out, copy=False), head)
                hidden = got[order].reshape(n, rows, -1)[:, skip : skip + per]
    elif n_out == n * n_ctx:
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
        capture: HiddenCapture | None = None,
        store: str | None = None,
    ) -> None:
        self.model, self.s, self.ref, self.tokens, self.n_ctx = model, s, ref, tokens, n_ctx
        self.capture = capture
        self.store = store  # base pass: "compact" (hidden states) or "full" (log-probs)
        self.full: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.base = base
        src = base.head if base is not None else head
        self.head_f32 = None if src is None else np.ascontiguousarray(src, dtype=np.float32)
        self.hdtype = None if head is None else hidden_dtype(head)
        self.cols: dict[str, list[np.ndarray]] = {}
        self.hidden: list[np.ndarray] = []
        self.pool: ThreadPoolExecutor | None = None

    def _add(self, name: str, v: np.ndarray) -> None:
        self.cols.setdefault(name, []).append(v)

    def run(self, ctx: ChildContext, n_chunk: int, n_seq: int) -> dict[str, Any]:
        """Decode and score every chunk; the numpy scoring runs on the decode's threads
        (``llama_decode`` is idle meanwhile), so it takes 1/threads of its serial time."""
        with ThreadPoolExecutor(self.s.threads) as self.pool:
            return self._run(ctx, n_chunk, n_seq)

    def _run(self, ctx: ChildContext, n_chunk: int, n_seq: int) -> dict[str, Any]:
        ctx.progress(Progress(Phase.EVAL, 0, n_chunk, "evaluating"))
        for i in range(0, n_chunk, n_seq):
            n = min(n_seq, n_chunk - i)
            logits, hidden = _decode_group(
                self.s, self.tokens, i, n, self.n_ctx, self.capture, self.head_f32
            )
            ref = (
                None if self.ref is None else _decode_group(self.ref, self.tokens, i, n, self.n_ctx)
            )
            for c in range(n):
                self._chunk(i + c, logits[c], None if hidden is None else hidden[c], ref, c)
            done = i + n
            ctx.progress(Progress(Phase.EVAL, done, n_chunk, f"chunk {done}"))
        out: dict[str, Any] = {}
        for k, v in self.cols.items():
            out[k] = np.concatenate(v).astype(bool if k == "same_top" else np.float32)
        return out

    def _store(
        self, chunk: int, x: np.ndarray, h: np.ndarray | None, rows: np.ndarray, nxt: np.ndarray
    ) -> None:
        """Base pass: keep what the cache needs. The first chunk decides the form: hidden
        states when they reproduce llama.cpp's logits, else every log-prob."""
        lse = score_rows(x, pool=self.pool).lse
        tok_lq = x[rows, nxt] - lse
        self._add("nll", -tok_lq)
        self._add("tok_lp", tok_lq)
        if self.store == "compact":
            assert self.head_f32 is not None and self.hdtype is not None
            hq = None if h is None else h.astype(self.hdtype)
            # the first decode is checked chunk by chunk (so the row order is checked too)
            redo = None
            if hq is not None and chunk < self.s.n_seq:
                redo = head_logits(hq, self.head_f32, self.pool)
            if chunk == 0 and (redo is None or head_error(x, redo) > HEAD_TOLERANCE):
                self.store = "full"  # an output head lwq cannot recompute: bias, softcap…
            elif hq is None:
                raise JobFailed(f"{self.model}: hidden states stopped matching the logits")
            else:
                if redo is not None and chunk > 0:  # chunk 0 passed the same check just above
                    check_head(self.model, x, redo)
                self.hidden.append(hq)
                return
        self.full.append(quantize_logprobs(x - lse[:, None]))

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
        rows = np.arange(per)
        nxt = self.tokens[chunk * n_ctx + first + 1 : (chunk + 1) * n_ctx]
        if self.store is not None:
            self._store(chunk, x, h, rows, nxt)
            return
        if ref is not None and self.head_f32 is not None and self.hdtype is not None:
            rx, rh = ref[0][c], ref[1]
            assert rh is not None
            exact = score_rows(x, rx, self.pool)
            assert exact.kld is not None and exact.lse_base is not None
            tok_lp = rx[rows, nxt] - exact.lse_base
            self._add("kld_exact", exact.kld)
            xb, hidden = None, rh[c].astype(self.hdtype)  # what the cache would have stored
        elif self.base is not None and self.head_f32 is not None:
            r = slice(chunk * per, (chunk + 1) * per)
            tok_lp = self.base.tok_lp[r].astype(np.float64)
            if self.base.is_full:
                xb, hidden = self.base.full_logprobs(r), None
            else:
                xb, hidden = None, self.base.hidden[r]
        else:
            self._add("nll", -(x[rows, nxt] - score_rows(x, pool=self.pool).lse))
            return
        sc = score_rows(x, xb, self.pool, hidden=hidden, head=self.head_f32)
        assert sc.kld is not None and sc.same_top is not None
        tok_lq = x[rows, nxt] - sc.lse
        self._add("nll", -tok_lq)
        self._add("nll_base", -tok_lp)
        self._add("kld", sc.kld)
        self._add("p_diff", np.exp(tok_lq) - np.exp(tok_lp))
        self._add("same_top", sc.same_top)
