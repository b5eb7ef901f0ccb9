"""A loaded model plus a decoding context, through llama.cpp's low-level C API.

``LlamaSession`` owns one ``llama_model*`` and one ``llama_context*`` and frees both in
``close()``. It is deliberately thin: tokenize, clear the KV memory, decode a batch of tokens
for one or several sequences, read logits. Evaluation (perplexity, KLD, tasks), speed tests
and imatrix collection (via ``cb_eval``) are built on it above the engine layer, and all of
them run inside a child process so that cancel can kill a blocking ``llama_decode``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.errors import Cancelled, InputError, JobFailed, ModelFileError
from .common import (
    LogTail,
    _backend_init,
    _init_null_log,
    _lib,
    captured_log,
    model_params,
    with_reason,
)
from .prototypes import GGML, ThreadpoolParams

#: ``cb_eval(tensor_ptr, ask, user_data) -> bool``: ggml's scheduler eval callback. With
#: ``ask`` true, return whether you want to see this tensor's data; with ``ask`` false the data
#: is computed and the return value says whether to continue the graph.
EvalCallback = Callable[[int, bool, int | None], bool]
#: ``on_load(fraction) -> bool``; return False to abort loading (raises ``Cancelled``).
LoadProgress = Callable[[float], bool]
#: ``abort() -> bool``; checked by ggml between graph nodes; True aborts the decode.
AbortCheck = Callable[[], bool]


@dataclass(frozen=True)
class SessionInfo:
    """What the loaded model is, in the terms llama-bench reports."""

    path: str
    description: str
    model_size: int
    n_params: int
    n_vocab: int
    n_ctx_train: int
    n_ctx: int
    n_batch: int
    n_seq: int
    threads: int
    gpu_layers: int
    add_bos: bool
    bos: int
    system_info: str


class LlamaSession:
    """One model + context. Use as a context manager or call ``close()``.

    ``n_ctx`` is the context of *one* sequence; the context holds ``n_seq`` of them
    (``n_ctx * n_seq`` cells, llama-perplexity's ``n_parallel``), so several chunks or task
    endings can share one ``llama_decode``. ``n_batch`` defaults to ``n_ctx * n_seq``
    (llama.cpp caps the logical batch at the context size). ``unified_kv`` shares one cache
    between sequences (needed when sequences share a prefix, as the task scorers do).
    ``cb_eval``/``cb_eval_user_data`` go into ``llama_context_params`` unchanged: pass a
    Python callable of type ``EvalCallback`` (wrapped here and kept alive) or a ready
    ``ggml_backend_sched_eval_callback`` ctypes object.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 512,
        n_batch: int | None = None,
        n_ubatch: int | None = None,
        n_seq: int = 1,
        threads: int = 0,
        gpu_layers: int = 0,
        unified_kv: bool = False,
        cb_eval: EvalCallback | Any | None = None,
        cb_eval_user_data: int | None = None,
        on_load: LoadProgress | None = None,
        abort: AbortCheck | None = None,
        log: Callable[[int, str], None] | None = None,
    ) -> None:
        self._lc = lc = _lib()
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._threadpool: Any = None
        self._keep: list[Any] = []  # ctypes callbacks referenced by native code
        if n_ctx < 2 or n_seq < 1:
            raise InputError(f"bad context size {n_ctx} x {n_seq} sequences")
        path = str(path)
        if not os.path.isfile(path):
            raise ModelFileError(f"{path}: no such model file")
        _init_null_log()
        _backend_init()
        self.threads = threads if threads > 0 else (os.cpu_count() or 1)
        self.n_seq = n_seq
        self.n_ctx_seq = n_ctx
        total_ctx = n_ctx * n_seq
        self.n_batch = min(n_batch or total_ctx, total_ctx)
        self.gpu_layers = gpu_layers
        self._path = path
        self._log = log
        self._n_ubatch = n_ubatch
        self._ctx_rest = (unified_kv, cb_eval, cb_eval_user_data, abort)
        self._tail = LogTail(log)
        try:
            with captured_log(self._tail):
                self._load_model(path, gpu_layers, on_load)
                self._make_context(total_ctx, n_ubatch, *self._ctx_rest)
        except BaseException:
            self.close()
            raise
        self._vocab = lc.llama_model_get_vocab(self._model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self._vocab))
        self.bos = int(lc.llama_vocab_bos(self._vocab))
        self.n_embd = int(lc.llama_model_n_embd(self._model))
        self._embeddings = False
        self._batch = lc.llama_batch_init(self.n_batch, 0, n_seq)
        self._batch_cap = self.n_batch

    # --- construction -----------------------------------------------------------------------

    def _load_model(self, path: str, gpu_layers: int, on_load: LoadProgress | None) -> None:
        lc = self._lc
        mp = model_params(gpu_layers)
        aborted = [False]
        if on_load is not None:

            def _progress(frac: float, _user: ctypes.c_void_p) -> bool:
                ok = bool(on_load(float(frac)))
                aborted[0] = not ok
                return ok

            cb = lc.llama_progress_callback(_progress)
            self._keep.append(cb)
            mp.progress_callback = cb
        self._model = lc.llama_model_load_from_file(path.encode(), mp)
        if not self._model:
            if aborted[0]:
                raise Cancelled("model loading cancelled")
            raise ModelFileError(
                with_reason(f"{path}: llama.cpp could not load the model", self._tail)
            )

    def _make_context(
        self,
        total_ctx: int,
        n_ubatch: int | None,
        unified_kv: bool,
        cb_eval: Any,
        cb_eval_user_data: int | None,
        abort: AbortCheck | None,
    ) -> None:
        lc = self._lc
        cp = lc.llama_context_default_params()
        cp.n_ctx = total_ctx
        cp.n_batch = self.n_batch
        cp.n_ubatch = min(n_ubatch or 512, self.n_batch)
        cp.n_seq_max = self.n_seq
        cp.n_threads = self.threads
        cp.n_threads_batch = self.threads
        cp.kv_unified = unified_kv
        cp.no_perf = False
        if cb_eval is not None:
            if not isinstance(cb_eval, lc.ggml_backend_sched_eval_callback):
                fn = cb_eval

                def _eval(t: int, ask: bool, user: int | None) -> bool:
                    return bool(fn(t, bool(ask), user))

                cb_eval = lc.ggml_backend_sched_eval_callback(_eval)
            self._keep.append(cb_eval)
            cp.cb_eval = cb_eval
            cp.cb_eval_user_data = ctypes.c_void_p(cb_eval_user_data or 0)
        if abort is not None:
            ab = lc.ggml_abort_callback(lambda _user: bool(abort()))
            self._keep.append(ab)
            cp.abort_callback = ab
        self._ctx = lc.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise JobFailed(
                with_reason(
                    f"{self._path}: llama.cpp could not create a context of {total_ctx}", self._tail
                )
            )

    # --- queries ----------------------------------------------------------------------------

    @property
    def model_ptr(self) -> Any:
        """The raw ``llama_model*`` (for engine modules only)."""
        return self._model

    def info(self) -> SessionInfo:
        lc = self._lc
        buf = ctypes.create_string_buffer(256)
        lc.llama_model_desc(self._model, buf, 256)
        return SessionInfo(
            path=self._path,
            description=buf.value.decode("utf-8", "replace"),
            model_size=int(lc.llama_model_size(self._model)),
            n_params=int(lc.llama_model_n_params(self._model)),
            n_vocab=self.n_vocab,
            n_ctx_train=int(lc.llama_model_n_ctx_train(self._model)),
            n_ctx=self.n_ctx_seq,
            n_batch=self.n_batch,
            n_seq=self.n_seq,
            threads=self.threads,
            gpu_layers=self.gpu_layers,
            add_bos=self.add_bos,
            bos=self.bos,
            system_info=lc.llama_print_system_info().decode("utf-8", "replace"),
        )

    def tokenize(self, text: str | bytes, add_special: bool = True) -> np.ndarray:
        """Token ids (int32) like ``common_tokenize(ctx, text, add_special)``: special tokens
        in the text are not parsed; BOS is added when ``add_special`` and the vocab wants it."""
        raw = text.encode("utf-8") if isinstance(text, str) else text
        cap = len(raw) + 8
        buf = (self._lc.llama_token * cap)()
        n = self._lc.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, False)
        if n < 0:
            cap = -n
            buf = (self._lc.llama_token * cap)()
            n = self._lc.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, False)
        if n < 0:
            raise JobFailed(f"tokenization failed ({n})")
        return np.frombuffer(buf, dtype=np.int32, count=n).copy()

    # --- decoding ---------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every sequence (``llama_memory_clear`` with data)."""
        self._lc.llama_memory_clear(self._lc.llama_get_memory(self._ctx), True)

    @property
    def path(self) -> str:
        return self._path

    def decode(
        self,
        tokens: Sequence[int] | np.ndarray,
        pos: Sequence[int] | np.ndarray,
        seq: Sequence[int | Sequence[int]] | np.ndarray,
        outputs: Sequence[bool] | np.ndarray,
    ) -> int:
        """One ``llama_decode`` of ``len(tokens)`` (≤ n_batch) tokens; returns the output count.

        ``seq[i]`` is one sequence id or a list of ids (a token that belongs to several sequences);
        ``outputs[i]`` asks for that token's logits. Raises ``Cancelled`` when the abort
        callback stopped the decode, ``JobFailed`` otherwise.
        """
        lc, b = self._lc, self._batch
        n = len(tokens)
        if n > self._batch_cap:
            raise JobFailed(f"batch of {n} tokens exceeds n_batch {self._batch_cap}")
        tok = np.asarray(tokens, dtype=np.int32)
        ps = np.asarray(pos, dtype=np.int32)
        out = np.asarray(outputs, dtype=np.int8)
        ctypes.memmove(b.token, tok.ctypes.data, 4 * n)
        ctypes.memmove(b.pos, ps.ctypes.data, 4 * n)
        ctypes.memmove(b.logits, out.ctypes.data, n)
        for i in range(n):
            s = seq[i]
            if isinstance(s, (int, np.integer)):
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = int(s)
            else:
                b.n_seq_id[i] = len(s)
                for k, sid in enumerate(s):
                    b.seq_id[i][k] = int(sid)
        b.n_tokens = n
        rc = lc.llama_decode(self._ctx, b)
        if rc == 2:
            raise Cancelled("decode aborted")
        if rc != 0:
            raise JobFailed(f"llama_decode failed ({rc}) on a batch of {n} tokens")
        return n if self._embeddings else int(out.sum())

    def logits(self, n_outputs: int, copy: bool = True) -> np.ndarray:
        """The last decode's output logits, shape (n_outputs, n_vocab), float32.

        Rows are in batch order of the tokens that asked for output. ``copy=False`` gives a
        view of llama.cpp's buffer, valid only until the next decode (no 100 MB copy)."""
        ptr = self._lc.llama_get_logits(self._ctx)
        arr = np.ctypeslib.as_array(ptr, shape=(n_outputs * self.n_vocab,))
        out = arr.reshape(n_outputs, self.n_vocab)
        return out.copy() if copy else out

    def set_embeddings(self, on: bool) -> None:
        """Also output the final hidden state (the output head's input) of every token.

        llama.cpp then outputs *all* tokens of a batch (logits and hidden states), whatever
        ``outputs`` asked for; ``decode`` returns that count."""
        self._lc.llama_set_embeddings(self._ctx, on)
        self._embeddings = on

    def embeddings(self, n_outputs: int) -> np.ndarray:
        """Copy of the last decode's hidden states, shape (n_outputs, n_embd), float32."""
        ptr = self._lc.llama_get_embeddings(self._ctx)
        if not ptr:
            raise JobFailed("no hidden states: call set_embeddings(True) before decoding")
        arr = np.ctypeslib.as_array(ptr, shape=(n_outputs * self.n_embd,))
        return arr.reshape(n_outputs, self.n_embd).copy()

    def synchronize(self) -> None:
        self._lc.llama_synchronize(self._ctx)

    def attach_threadpool(self, poll: int = 50) -> None:
        """Run this context on a persistent ggml CPU threadpool, as llama-bench does.

        Without one, ggml-cpu builds a throw-away pool for every graph (with OpenMP, as in
        llama-cpp-python's build, no measurable difference was found). ``poll`` is
        llama-bench's ``--poll`` (0 = sleep between graphs, 100 = spin). The pool lives
        until ``close``."""
        if self._threadpool:
            return
        params = ThreadpoolParams()
        GGML.ggml_threadpool_params_init(ctypes.byref(params), self.threads)
        params.poll = poll
        tp = GGML.ggml_threadpool_new(ctypes.byref(params))
        if not tp:
            raise JobFailed(f"ggml could not create a threadpool of {self.threads} threads")
        self._threadpool = tp
        GGML.llama_attach_threadpool(self._ctx, tp, None)

    def new_context(
        self, n_ctx: int, *, n_batch: int | None = None, n_ubatch: int | None = None
    ) -> None:
        """Replace the context (KV cache, batch, threadpool) by a fresh one of ``n_ctx`` tokens
        per sequence; the model stays loaded, as llama-bench keeps its model between tests.
        Other context settings are those given to the constructor."""
        if n_ctx < 2:
            raise InputError(f"bad context size {n_ctx}")
        self._free_context()
        total_ctx = n_ctx * self.n_seq
        self.n_ctx_seq = n_ctx
        self.n_batch = min(n_batch or total_ctx, total_ctx)
        self._tail = LogTail(self._log)
        with captured_log(self._tail):
            self._make_context(total_ctx, n_ubatch or self._n_ubatch, *self._ctx_rest)
        self._embeddings = False
        self._batch = self._lc.llama_batch_init(self.n_batch, 0, self.n_seq)
        self._batch_cap = self.n_batch

    # --- lifetime ---------------------------------------------------------------------------

    def _free_context(self) -> None:
        lc = self._lc
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            if self._threadpool:
                GGML.llama_detach_threadpool(self._ctx)
            lc.llama_free(self._ctx)
        self._ctx = None
        if self._threadpool:
            GGML.ggml_threadpool_free(self._threadpool)
            self._threadpool = None

    def close(self) -> None:
        self._free_context()
        lc = self._lc
        if self._model:
            lc.llama_model_free(self._model)
        self._model = None

    def __enter__(self) -> LlamaSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
