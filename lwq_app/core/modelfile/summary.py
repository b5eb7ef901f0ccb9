"""A model at a glance: the figures the app's model page shows, from the inventory alone.

``summarize(info)`` reads nothing beyond what ``open_model`` read (header only) except the
shards' sizes. A quantized source gets a one-sentence ``explanation`` of why lwq works from
an F16 upcast of it instead: requantizing compounds the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.errors import ModelFileError
from .inventory import ModelInfo
from .type_catalog import FLOAT_FTYPES

#: tensor types of an unquantized model
FLOAT_TYPES = frozenset(FLOAT_FTYPES)

#: ``llama_ftype`` -> the name llama.cpp gives the file type (``llama_model_ftype_name``,
#: without its ``MOSTLY_`` prefix); ``test_summary`` checks these against the stock mixes
FTYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE",
}  # fmt: skip


@dataclass(frozen=True)
class TypeShare:
    """One tensor type's part of a model's tensor data."""

    type: str
    n_tensors: int
    bytes: int
    share: float  # of all tensor-data bytes, 0..1


@dataclass(frozen=True)
class ModelSummary:
    architecture: str
    name: str
    n_params: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_gqa: int
    n_expert: int
    n_expert_used: int
    context_length: int  # the training context (``<arch>.context_length``), 0 if unknown
    n_vocab: int
    file_size: int  # bytes over all shards
    n_files: int
    type_mix: tuple[TypeShare, ...]  # largest first
    is_float: bool
    file_type_name: str
    tied_embeddings: bool
    explanation: str  # why a quantized source is upcast; "" for a float model


def is_float_model(info: ModelInfo) -> bool:
    """Whether every tensor is F32, F16 or BF16 (then lwq quantizes the file itself)."""
    return all(t.type in FLOAT_TYPES for t in info.tensors)


def type_mix(info: ModelInfo) -> tuple[TypeShare, ...]:
    """Tensor types by bytes, largest first (ties by name)."""
    groups: dict[str, list[int]] = {}
    for t in info.tensors:
        g = groups.setdefault(t.type, [0, 0])
        g[0] += 1
        g[1] += t.n_bytes
    total = sum(g[1] for g in groups.values()) or 1
    rows = [TypeShare(k, n, b, b / total) for k, (n, b) in groups.items()]
    return tuple(sorted(rows, key=lambda r: (-r.bytes, r.type)))


def file_type_name(info: ModelInfo) -> str:
    """llama.cpp's name of ``general.file_type``; without that key, the largest tensor type."""
    if info.file_type is not None and info.file_type in FTYPE_NAMES:
        return FTYPE_NAMES[info.file_type]
    mix = type_mix(info)
    return mix[0].type if mix else "unknown"


def _int_key(metadata: dict[str, Any], key: str) -> int:
    v = metadata.get(key)
    if isinstance(v, list):  # per-layer arrays
        v = v[0] if v else 0
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _file_size(paths: tuple[Path, ...]) -> int:
    try:
        return sum(p.stat().st_size for p in paths)
    except OSError as e:
        raise ModelFileError(f"{e.filename}: cannot read ({e.strerror})") from None


def summarize(info: ModelInfo) -> ModelSummary:
    """The model page's figures for ``info`` (an ``open_model`` result)."""
    arch = info.architecture
    floats = is_float_model(info)
    ftype = file_type_name(info)
    mix = type_mix(info)
    shown_type = ftype
    if not floats and ftype in FLOAT_TYPES:  # a float file type with quantized tensors
        shown_type = next(r.type for r in mix if r.type not in FLOAT_TYPES)
    explanation = (
        ""
        if floats
        else f"This file is quantized ({shown_type}). Re-quantizing it would compound the "
        "error, so lwq works from an F16 upcast of it, made once and kept in the project."
    )
    return ModelSummary(
        architecture=arch,
        name=info.name,
        n_params=info.n_params,
        n_layer=info.n_layer,
        n_head=info.n_head,
        n_head_kv=info.n_head_kv,
        n_gqa=info.n_gqa,
        n_expert=info.n_expert,
        n_expert_used=_int_key(info.metadata, f"{arch}.expert_used_count"),
        context_length=_int_key(info.metadata, f"{arch}.context_length"),
        n_vocab=info.n_vocab,
        file_size=_file_size(info.paths),
        n_files=len(info.paths),
        type_mix=mix,
        is_float=floats,
        file_type_name=ftype,
        tied_embeddings=info.tied_embeddings,
        explanation=explanation,
    )
