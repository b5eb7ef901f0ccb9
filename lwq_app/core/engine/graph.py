"""Activation statistics from llama.cpp's graph-eval callback (``cb_eval``), via ctypes.

A port of ``IMatrixCollector::collect_imatrix`` (tools/imatrix/imatrix.cpp, pinned build):
for every ``MUL_MAT`` whose weight (src[0]) is a ``blk.*`` tensor (or ``output.weight`` with
``process_output``), and every ``MUL_MAT_ID``, accumulate Σx² per input column of src[1]
and the token count, per expert for ``MUL_MAT_ID`` (routing ids in src[2]). Activations in a
device buffer are copied with ``ggml_backend_tensor_get``. The chunking is llama-imatrix's:
``n_ctx`` chunks, BOS on each chunk when the vocab adds one, ``batch // n_ctx`` sequences
per decode, every token an output (so the last layer and ``output.weight`` see all tokens).

The model, context and batch are still handled here rather than by ``LlamaSession`` (this
loop is llama-imatrix's own: every token an output, the batch filled in place); moving it onto
``LlamaSession`` is only worth it if the imatrix benchmark keeps its ratio.
"""

from __future__ import annotations

import ctypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..jobs.errors import InputError, JobFailed, ModelFileError
from .common import (
    LogTail,
    _backend_init,
    _init_null_log,
    _lib,
    captured_log,
    model_params,
    with_reason,
)
from .prototypes import GGML, GGML_TYPE_F32, GgmlTensor

_op_ids: dict[str, int] = {}


def op_id(name: str) -> int:
    """The ggml op enum value for ``name`` ("MUL_MAT"), looked up in libggml itself."""
    if not _op_ids:
        g = GGML
        for i in range(100):  # ggml_op_name does not bound-check: stop at MUL_MAT_ID
            raw = g.ggml_op_name(i)
            _op_ids.setdefault(raw.decode(), i)
            if raw == b"MUL_MAT_ID":
                break
    return _op_ids[name]


def filter_tensor_name(name: str) -> str:
    """``CUDA0#blk.0.attn_k.weight#0`` -> ``blk.0.attn_k.weight`` (as llama-imatrix)."""
    p = name.find("#")
    if p < 0:
        return name
    rest = name[p + 1 :]
    q = rest.find("#")
    return rest if q < 0 else rest[:q]


def _array(t: GgmlTensor, ptr: int, dtype: Any, host_buf: list[np.ndarray]) -> np.ndarray:
    """A (ne3, ne2, ne1, ne0) view of a tensor's data (copied from a device buffer if needed)."""
    g = GGML
    ne = [int(x) for x in t.ne]
    nb = [int(x) for x in t.nb]
    nbytes = int(g.ggml_nbytes(ptr))
    if t.buffer and not g.ggml_backend_buffer_is_host(t.buffer):
        buf = np.empty(nbytes, np.uint8)
        g.ggml_backend_tensor_get(ptr, buf.ctypes.data, 0, nbytes)
        host_buf.append(buf)
        raw = buf
    else:
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(t.data))
    return np.lib.stride_tricks.as_strided(
        raw.view(dtype),
        shape=(ne[3], ne[2], ne[1], ne[0]),
        strides=(nb[3], nb[2], nb[1], nb[0]),
        writeable=False,
    )


class HiddenCapture:
    """A ``cb_eval`` that copies the final hidden state (``result_norm``, the output head's
    input) of the rows that asked for logits.

    llama.cpp's own hidden-state output (``llama_set_embeddings``) makes *every* token an
    output, which doubles the output-head work of a perplexity pass; the graph already
    selects the output rows before the final norm, so capturing that node costs one copy.
    ``take()`` returns the rows captured since the last call (float32, n_rows × n_embd)."""

    NODE = b"result_norm"

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.error: BaseException | None = None
        self.callback = _lib().ggml_backend_sched_eval_callback(self._cb)

    def _cb(self, tp: Any, ask: bool, _user: Any) -> bool:
        try:
            t = ctypes.cast(tp, ctypes.POINTER(GgmlTensor)).contents
            if t.name != self.NODE:
                return False
            if ask:
                return True
            if t.type != GGML_TYPE_F32 or t.ne[2] != 1 or t.ne[3] != 1:
                raise JobFailed(f"unexpected {self.NODE.decode()} tensor layout")
            keep: list[np.ndarray] = []
            self.rows.append(np.array(_array(t, tp, np.float32, keep)[0, 0]))
            return True
        except BaseException as e:  # never let an exception cross into C
            if self.error is None:
                self.error = e
            return False

    def take(self) -> np.ndarray | None:
        """The captured rows (None if the graph has no ``result_norm`` node)."""
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        if not self.rows:
            return None
        out = np.concatenate(self.rows) if len(self.rows) > 1 else self.rows[0]
        self.rows = []
        return out


@dataclass
class Accumulated:
    """Σx² per (matrix, column) and token count per matrix of one weight tensor."""

    sums: np.ndarray  # float64 (n_mat, ne0)
    counts: np.ndarray  # int64 (n_mat,)


class ImatrixCollector:
    """The ``cb_eval`` callback and its accumulators (one instance per context)."""

    def __init__(self, process_output: bool = False) -> None:
        self.process_output = process_output
        self.stats: dict[str, Accumulated] = {}
        self.error: BaseException | None = None
        self._mul_mat = op_id("MUL_MAT")
        self._mul_mat_id = op_id("MUL_MAT_ID")
        self._last: tuple[tuple[Any, ...], np.ndarray] | None = None
        #: called with each weight's name after its statistics were added (progress inside
        #: a decode: the graph runs layer by layer)
        self.on_weight: Callable[[str], None] | None = None
        self.callback = _lib().ggml_backend_sched_eval_callback(self._cb)

    def _wanted(self, wname: str) -> bool:
        if wname.startswith("blk."):
            return True
        # lwq extension: a tied token_embd used as the output matrix counts as output
        return self.process_output and wname in ("output.weight", "token_embd.weight")

    def _cb(self, tp: Any, ask: bool, _user: Any) -> bool:
        try:
            t = ctypes.cast(tp, ctypes.POINTER(GgmlTensor)).contents
            if t.op != self._mul_mat and t.op != self._mul_mat_id:
                return False
            src0 = t.src[0].contents
            src1 = t.src[1].contents
            wname = filter_tensor_name(src0.name.decode("utf-8", "replace"))
            if ask:
                if t.op == self._mul_mat_id:
                    return True
                if src1.ne[1] < 16 or src1.type != GGML_TYPE_F32:
                    return False
                return self._wanted(wname)
            if t.op == self._mul_mat_id:
                self._collect_id(t, src0, src1, wname)
            else:
                self._collect(src0, src1, ctypes.addressof(src1), wname)
            if self.on_weight is not None:
                self.on_weight(wname)
            return True
        except BaseException as e:  # never let an exception cross into C
            if self.error is None:
                self.error = e
            return False

    def _entry(self, wname: str, n_mat: int, ne0: int) -> Accumulated:
        e = self.stats.get(wname)
        if e is None:
            e = self.stats[wname] = Accumulated(np.zeros((n_mat, ne0)), np.zeros(n_mat, np.int64))
        elif e.sums.shape != (n_mat, ne0):
            raise JobFailed(f"inconsistent size for {wname}: {e.sums.shape} vs {(n_mat, ne0)}")
        return e

    def _collect(self, src0: GgmlTensor, src1: GgmlTensor, p1: int, wname: str) -> None:
        # q/k/v (and gate/up) read the same activation tensor one after the other: its Σx²
        # is computed once. The key is the tensor itself (struct, data, shape), and only the
        # previous call is remembered, so a buffer reused later in the graph never matches.
        key = (p1, int(src1.data or 0), tuple(src1.ne), tuple(src1.nb))
        if self._last is not None and self._last[0] == key:
            sq = self._last[1]
        else:
            keep: list[np.ndarray] = []
            x = _array(src1, p1, np.float32, keep)  # (ne3, ne2, ne1, ne0)
            sq = np.einsum("abij,abij->abj", x, x)  # Σ over rows, per (i3, i2) and column
            if not np.all(np.isfinite(sq)):
                raise JobFailed(f"non-finite activations in {wname}")
            self._last = (key, sq)
        n2, n3 = int(src0.ne[2]), int(src0.ne[3])
        n_mat = n2 * n3
        e = self._entry(wname, n_mat, int(src1.ne[0]))
        for i3 in range(sq.shape[0]):
            for i2 in range(sq.shape[1]):
                e.sums[(i3 % n3) * n2 + (i2 % n2)] += sq[i3, i2]
        n_rows = int(src1.ne[1]) * sq.shape[0] * sq.shape[1]
        e.counts += n_rows // n_mat

    def _collect_id(self, t: GgmlTensor, src0: GgmlTensor, src1: GgmlTensor, wname: str) -> None:
        keep: list[np.ndarray] = []
        ids_t = t.src[2].contents
        ids = _array(ids_t, ctypes.addressof(ids_t), np.int32, keep)[0, 0]  # (n_tokens, n_ids)
        x = _array(src1, ctypes.addressof(src1), np.float32, keep)[0]  # (n_tok, ne1, ne0)
        n_as = int(src0.ne[2])
        if ids.shape[0] != x.shape[0]:
            raise JobFailed(f"{wname}: expert ids do not match the activations")
        e = self._entry(wname, n_as, int(src1.ne[0]))
        if np.any(ids < 0) or np.any(ids >= n_as):
            raise JobFailed(f"{wname}: expert id out of range")
        for idx in range(ids.shape[1]):
            xi = x[:, idx % x.shape[1], :]
            sq = np.square(xi, dtype=np.float64)
            onehot = np.zeros((n_as, xi.shape[0]))
            onehot[ids[:, idx], np.arange(xi.shape[0])] = 1.0
            e.sums += onehot @ sq
            e.counts += np.bincount(ids[:, idx], minlength=n_as)
        if not np.all(np.isfinite(e.sums)):
            raise JobFailed(f"non-finite activations in {wname}")


@dataclass(frozen=True)
class CollectResult:
    stats: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (sums (n_mat, ne0), counts)
    n_chunks: int  # chunks processed in this run
    chunk_size: int
    n_tokens_text: int
    seconds: float


ChunkHook = Callable[[int, int, dict[str, tuple[np.ndarray, np.ndarray]]], None]
_BLOCK = re.compile(r"blk\.(\d+)\.")
#: ``(chunks done, as a fraction while a decode runs, total)``
PartialHook = Callable[[float, int], None]


def tokenize(lc: Any, vocab: Any, text: str) -> np.ndarray:
    """``common_tokenize(ctx, text, add_special=true, parse_special=false)``."""
    raw = text.encode("utf-8")
    n_max = len(raw) + 8
    buf = (lc.llama_token * n_max)()
    n = lc.llama_tokenize(vocab, raw, len(raw), buf, n_max, True, False)
    if n < 0:
        n_max = -n
        buf = (lc.llama_token * n_max)()
        n = lc.llama_tokenize(vocab, raw, len(raw), buf, n_max, True, False)
    return np.ctypeslib.as_array(buf)[:n].astype(np.int32)


def collect_activations(
    model_path: str,
    text: str,
    *,
    n_ctx: int = 512,
    n_chunks: int = -1,
    n_batch: int = 512,
    threads: int = 0,
    gpu_layers: int = 0,
    process_output: bool = False,
    skip_chunks: int = 0,
    on_chunk: ChunkHook | None = None,
    on_partial: PartialHook | None = None,
) -> CollectResult:
    """Run llama-imatrix's chunk loop over ``text`` and return the accumulated statistics.

    ``skip_chunks`` resumes after chunks already counted elsewhere; ``on_chunk(done, total,
    stats)`` is called after each decode with the statistics so far (for progress/saving);
    ``on_partial(done, total)`` while a decode runs, as each layer's weights are collected
    (``done`` fractional: one decode of a large model takes seconds).
    """
    lc = _lib()
    _init_null_log()
    _backend_init()
    if n_ctx <= 0:
        raise InputError("--ctx must be > 0")
    n_seq = max(1, n_batch // n_ctx)
    n_kv = n_seq * n_ctx
    n_batch = min(n_batch, n_kv)
    if not (n_batch < n_ctx or n_batch % n_ctx == 0):
        raise InputError(f"batch {n_batch} must be below ctx {n_ctx} or a multiple of it")
    collector = ImatrixCollector(process_output)
    t0 = time.monotonic()

    mparams = model_params(gpu_layers)
    tail = LogTail()
    with captured_log(tail):
        model = lc.llama_model_load_from_file(model_path.encode(), mparams)
    if not model:
        raise ModelFileError(with_reason(f"{model_path}: llama.cpp could not load the model", tail))
    ctx = None
    batch = None
    try:
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_kv
        cparams.n_batch = n_batch
        cparams.n_seq_max = n_seq
        cparams.n_outputs_max = 0
        cparams.n_outputs_max_per_seq = 0
        if threads > 0:
            cparams.n_threads = threads
            cparams.n_threads_batch = threads
        else:
            import os

            cparams.n_threads = cparams.n_threads_batch = os.cpu_count() or 4
        cparams.cb_eval = collector.callback
        cparams.cb_eval_user_data = None
        tail = LogTail()
        with captured_log(tail):
            ctx = lc.llama_init_from_model(model, cparams)
        if not ctx:
            raise JobFailed(
                with_reason(f"{model_path}: llama.cpp could not create a context", tail)
            )
        vocab = lc.llama_model_get_vocab(model)
        tokens = tokenize(lc, vocab, text)
        if len(tokens) < 2 * n_ctx:
            raise InputError(
                f"calibration text tokenizes to only {len(tokens)} tokens; llama-imatrix needs "
                f"at least {2 * n_ctx} for a context of {n_ctx}"
            )
        n_chunk_max = len(tokens) // n_ctx
        total = n_chunk_max if n_chunks < 0 else min(n_chunks, n_chunk_max)
        if skip_chunks >= total:
            raise InputError(f"nothing to resume: {skip_chunks} of {total} chunks already done")
        add_bos = bool(lc.llama_vocab_get_add_bos(vocab))
        bos = int(lc.llama_vocab_bos(vocab))
        num_batches = (n_ctx + n_batch - 1) // n_batch
        batch = lc.llama_batch_init(n_batch, 0, 1)
        tok = np.ctypeslib.as_array(batch.token, shape=(n_batch,))
        pos = np.ctypeslib.as_array(batch.pos, shape=(n_batch,))
        nsid = np.ctypeslib.as_array(batch.n_seq_id, shape=(n_batch,))
        logits = np.ctypeslib.as_array(batch.logits, shape=(n_batch,))
        nsid[:] = 1
        logits[:] = 1
        mem = lc.llama_get_memory(ctx)
        n_layer = max(1, int(lc.llama_model_n_layer(model)))
        done = skip_chunks
        where = [0.0, 1.0]  # chunks done before this decode, chunks per decode
        if on_partial is not None:

            def on_weight(wname: str) -> None:
                m = _BLOCK.match(wname)
                if m is not None:
                    layer = int(m.group(1))
                    on_partial(where[0] + where[1] * min(layer + 1, n_layer) / (n_layer + 1), total)

            collector.on_weight = on_weight
        for i in range(skip_chunks, total, n_seq):
            start = i * n_ctx
            n_seq_batch = min(n_seq, total - i)
            lc.llama_memory_clear(mem, True)
            for j in range(num_batches):
                b_start = start + j * n_batch
                b_size = min(start + n_ctx - b_start, n_batch)
                k = 0
                for seq in range(n_seq_batch):
                    s0 = b_start + seq * n_ctx
                    part = tokens[s0 : s0 + b_size].copy()
                    if add_bos and j == 0:
                        part[0] = bos
                    tok[k : k + b_size] = part
                    pos[k : k + b_size] = np.arange(j * n_batch, j * n_batch + b_size)
                    for m in range(k, k + b_size):
                        batch.seq_id[m][0] = seq
                    k += b_size
                batch.n_tokens = k
                where[0] = i + n_seq_batch * j / num_batches
                where[1] = n_seq_batch / num_batches
                rc = lc.llama_decode(ctx, batch)
                if collector.error is not None:
                    raise collector.error
                if rc != 0:
                    raise JobFailed(f"llama_decode failed with code {rc} at chunk {i + 1}")
            done = i + n_seq_batch
            if on_chunk is not None:
                on_chunk(done, total, _snapshot(collector))
        return CollectResult(
            _snapshot(collector), done - skip_chunks, n_ctx, len(tokens), time.monotonic() - t0
        )
    finally:
        if batch is not None:
            lc.llama_batch_free(batch)
        if ctx:
            lc.llama_free(ctx)
        lc.llama_model_free(model)


def _snapshot(c: ImatrixCollector) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {n: (e.sums.copy(), e.counts.copy()) for n, e in c.stats.items()}
