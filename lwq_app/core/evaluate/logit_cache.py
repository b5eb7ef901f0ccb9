"""Compact base-model logits for KL-divergence runs: hidden states plus the output head.

llama.cpp's ``--kl-divergence-base`` file keeps a log-prob for every vocabulary entry:
2·(n_vocab+4) bytes per token (~98 kB for SmolLM2, ~300 kB for a 150k vocab). Top-k
truncation does not work for small, flat models (top-64 + tail mass loses 25% of SmolLM2's
KLD, top-4096 still 2%). But the base logits are a matrix product: ``logits = W_out · h``
with ``h`` the final normed hidden state. On the CPU, llama.cpp rounds ``h`` to F16 before
multiplying an F16 ``W_out``, so storing ``h`` in F16 reproduces its logits to ~1e-4:

* per scored token: ``h`` (n_embd · 2 bytes; F32 when the head is not F16) and the exact
  log-prob of the observed token (float32), plus the evaluated tokens (8 bytes/scored token);
* once per file: the output head ``W_out`` (as stored in the base, dequantized if needed).

SmolLM2: 1164 bytes per scored token (84× smaller) + the 57 MB head; a 7B with a 152k vocab:
~7.2 kB per token + its head. The base pass checks on its first chunk that the recomputed
logits equal llama.cpp's, so an architecture with another head (bias, scale, softcap) is
not recomputed: its cache falls back to the full form (every log-prob, uint16 between a
per-row min and max, as llama.cpp stores them; ~98 kB per token for SmolLM2).

A cache is keyed on the base model's tensor-data hash, the text hash, ctx, chunk count and
vocab size; ``load_base_logits`` refuses a file whose key differs from what a run expects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.atomic import atomic_output
from ..jobs.errors import InputError, JobFailed
from ..modelfile.gguf_header import read_header

FORMAT = "lwq-base-logits"
VERSION = 2
HEAD_TOLERANCE = 2e-3  # max |recomputed - llama.cpp logit| / max |logit| on the first chunk


@dataclass(frozen=True)
class CacheKey:
    """What a base-logits cache was computed from; any difference means recompute."""

    model_hash: str
    text_sha256: str
    n_ctx: int
    n_chunks: int
    n_vocab: int

    def file_stem(self) -> str:
        return f"{self.model_hash[:16]}-{self.text_sha256[:12]}-c{self.n_ctx}-n{self.n_chunks}"


@dataclass(frozen=True)
class BaseLogits:
    """The base distribution for every scored token (rows in chunk order)."""

    key: CacheKey
    tokens: np.ndarray  # int32, n_chunks * n_ctx: the evaluated tokens
    hidden: np.ndarray  # (N, n_embd) float16 (float32 for a non-F16 head)
    tok_lp: np.ndarray  # (N,) float32: exact log-prob of the observed next token
    head: np.ndarray  # (n_vocab, n_embd) float16/float32: the output matrix
    # full form, for heads lwq cannot recompute (hidden and head then have 0 columns):
    # every log-prob as llama.cpp stores them, uint16 steps between a per-row min and max
    lp_q: np.ndarray | None = None  # (N, n_vocab) uint16
    lp_min: np.ndarray | None = None  # (N,) float32
    lp_step: np.ndarray | None = None  # (N,) float32

    @property
    def n_rows(self) -> int:
        return int(self.tok_lp.shape[0])

    @property
    def is_full(self) -> bool:
        return self.lp_q is not None

    def full_logprobs(self, rows: slice) -> np.ndarray:
        """The stored log-probs of ``rows`` (full form only), float32."""
        assert self.lp_q is not None and self.lp_min is not None and self.lp_step is not None
        q = self.lp_q[rows].astype(np.float32)
        return np.asarray(self.lp_min[rows, None] + q * self.lp_step[rows, None])


def output_head(model_path: Path) -> np.ndarray:
    """The output matrix of a GGUF (``output.weight``, else the tied ``token_embd.weight``)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    header = read_header(model_path)
    if header.tensor("output.bias") is not None:
        raise JobFailed(f"{model_path}: output heads with a bias are not supported yet")
    t = header.tensor("output.weight") or header.tensor("token_embd.weight")
    if t is None:
        raise JobFailed(f"{model_path}: no output.weight or token_embd.weight tensor")
    data = header.tensor_array(t)
    kind = GGMLQuantizationType(t.type_id)
    if kind in (GGMLQuantizationType.F16, GGMLQuantizationType.F32):
        return np.array(data)
    return np.asarray(dequantize(data, kind), dtype=np.float32)


def quantize_logprobs(lp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of log-probs as uint16 steps between each row's min and max (llama.cpp's form)."""
    mn = lp.min(axis=1).astype(np.float32)
    step = np.maximum((lp.max(axis=1) - mn) / 65535.0, 1e-12).astype(np.float32)
    q = np.rint((lp - mn[:, None]) / step[:, None]).clip(0, 65535).astype(np.uint16)
    return q, mn, step


def head_error(logits: np.ndarray, recomputed: np.ndarray) -> float:
    """max |recomputed − llama.cpp logit| / max |logit|."""
    return float(np.abs(recomputed - logits).max()) / max(1e-6, float(np.abs(logits).max()))


def hidden_dtype(head: np.ndarray) -> type[np.floating]:
    return np.float16 if head.dtype == np.float16 else np.float32


def check_head(model_path: str, logits: np.ndarray, recomputed: np.ndarray) -> None:
    """Refuse a model whose logits are not ``W_out · h`` (bias, scale, softcap, ...)."""
    err = head_error(logits, recomputed)
    if err > HEAD_TOLERANCE:
        raise JobFailed(
            f"{model_path}: lwq cannot reproduce this architecture's output head "
            f"(relative error {err:.2g}); compact base logits are not available for it"
        )


def save_base_logits(path: Path, bl: BaseLogits) -> None:
    """Write ``bl`` atomically (temp file + rename): a cancelled run leaves nothing."""
    meta = json.dumps({"format": FORMAT, "version": VERSION, **asdict(bl.key)}).encode()
    arrays: dict[str, np.ndarray] = {
        "tokens": bl.tokens, "hidden": bl.hidden, "tok_lp": bl.tok_lp, "head": bl.head,
    }  # fmt: skip
    if bl.lp_q is not None and bl.lp_min is not None and bl.lp_step is not None:
        arrays.update(lp_q=bl.lp_q, lp_min=bl.lp_min, lp_step=bl.lp_step)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        savez: Any = np.savez  # numpy's stub types **kwds against allow_pickle
        savez(f, meta=np.frombuffer(meta, dtype=np.uint8), **arrays)


def read_key(path: Path) -> CacheKey:
    """Only the key of a cache file (cheap: the arrays are not read)."""
    return _open(path, arrays=False)[0]


def load_base_logits(path: Path, expect: CacheKey | None = None) -> BaseLogits:
    """Read a cache; with ``expect``, refuse it unless it was made from the same inputs."""
    key, arrays = _open(path, arrays=True)
    if expect is not None:
        check_key(path, key, expect)
    try:
        bl = BaseLogits(key=key, **arrays)
    except TypeError as e:
        raise InputError(f"{path}: damaged base-logits file ({e})") from None
    want_rows = key.n_chunks * (key.n_ctx - 1 - key.n_ctx // 2)
    if bl.n_rows != want_rows or len(bl.tokens) != key.n_chunks * key.n_ctx:
        raise InputError(
            f"{path}: damaged base-logits file ({bl.n_rows} rows, {want_rows} expected)"
        )
    if bl.is_full:
        assert bl.lp_q is not None
        if bl.lp_q.shape != (want_rows, key.n_vocab):
            raise InputError(f"{path}: damaged base-logits file (log-probs {bl.lp_q.shape})")
    elif bl.head.shape != (key.n_vocab, bl.hidden.shape[1]) or len(bl.hidden) != want_rows:
        raise InputError(f"{path}: damaged base-logits file (head shape {bl.head.shape})")
    return bl


def _open(path: Path, arrays: bool) -> tuple[CacheKey, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            data = {k: z[k] for k in z.files if k != "meta"} if arrays else {}
    except FileNotFoundError:
        raise InputError(f"{path}: no such base-logits file") from None
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not an lwq base-logits file ({e})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(
            f"{path}: not an lwq base-logits file of version {VERSION} "
            f"(format {meta.get('format')}, version {meta.get('version')})"
        )
    return CacheKey(**{k: meta[k] for k in CacheKey.__dataclass_fields__}), data


def check_key(path: Path, got: CacheKey, want: CacheKey) -> None:
    what = {
        "n_vocab": "vocabulary size (base logits are from another model/vocab)",
        "text_sha256": "text",
        "n_ctx": "context size",
        "n_chunks": "chunk count",
        "model_hash": "base model (tensor data differs)",
    }
    for field, label in what.items():
        if want.model_hash == "" and field == "model_hash":
            continue
        if getattr(got, field) != getattr(want, field):
            raise InputError(
                f"{path}: base logits were computed for another {label}: "
                f"{getattr(got, field)} in the file, {getattr(want, field)} now"
            )
