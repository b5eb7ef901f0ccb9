"""Estimated sizes of a Hub model as F16 and as llama.cpp's stock mixes, before any download.

Where a transformers ``config.json`` gives the shapes (layers, width, heads, vocabulary), lwq
builds the F16 GGUF tensor list a conversion of those shapes makes (``shaped_model``) and runs
the stock mixes' own rules on it (``plan_from_preset``: row-width fallbacks, ``output`` and
``token_embd`` types, tied embeddings), so the estimate is what quantizing the real file would
give for a llama-style decoder (for SmolLM2's config: the real file's fingerprint and sizes,
byte for byte). Without shapes it is the Hub's parameter count times the bits per weight each
mix has on a reference 8B llama: a rough estimate, labelled so. The KV cache is llama.cpp's
default F16 cache for ``context`` tokens, where the config gives layers and heads; llama.cpp's
compute buffers are not counted (``evaluate.target_fit`` measures them once a model is here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..modelfile.inventory import ModelInfo, TensorInfo, allows_quantization
from ..modelfile.type_catalog import tensor_bytes
from ..plan.quant_plan import plan_from_preset

#: the stock mixes a search result shows sizes for, largest first
SEARCH_MIXES: tuple[str, ...] = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
#: model_type values whose config maps onto llama.cpp's llama-style tensor list (the GGUF
#: architecture the converter writes for them)
_LLAMA_LIKE = {
    "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
    "granite": "granite", "olmo": "olmo", "olmo2": "olmo2", "smollm3": "smollm3",
}  # fmt: skip


@dataclass(frozen=True)
class Shapes:
    """What a transformers ``config.json`` says about a decoder's shapes."""

    model_type: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    tied: bool

    @staticmethod
    def from_config(config: Mapping[str, Any] | None) -> Shapes | None:
        """The shapes of a config that has them all (text_config for multimodal wrappers);
        None otherwise."""
        if not isinstance(config, Mapping):
            return None
        c: Mapping[str, Any] = config
        if isinstance(c.get("text_config"), Mapping) and "num_hidden_layers" not in c:
            c = {**c["text_config"], "tie_word_embeddings": c.get("tie_word_embeddings")}
        try:
            n_head = int(c["num_attention_heads"])
            n_embd = int(c["hidden_size"])
            shapes = Shapes(
                model_type=str(c.get("model_type") or ""),
                n_layer=int(c["num_hidden_layers"]),
                n_embd=n_embd,
                n_ff=int(c["intermediate_size"]),
                n_head=n_head,
                n_head_kv=int(c.get("num_key_value_heads") or n_head),
                head_dim=int(c.get("head_dim") or n_embd // max(1, n_head)),
                n_vocab=int(c["vocab_size"]),
                tied=bool(c.get("tie_word_embeddings", False)),
            )
        except (KeyError, TypeError, ValueError):
            return None
        values = (shapes.n_layer, shapes.n_embd, shapes.n_ff, shapes.n_head, shapes.n_head_kv)
        if min(values) <= 0 or shapes.head_dim <= 0 or shapes.n_vocab <= 0:
            return None
        return shapes

    def kv_cache_bytes(self, context: int) -> int:
        """llama.cpp's default F16 K and V cache for ``context`` tokens."""
        return 2 * self.n_layer * context * self.n_head_kv * self.head_dim * 2

    @property
    def llama_like(self) -> bool:
        return self.model_type in _LLAMA_LIKE


def shaped_model(shapes: Shapes, name: str = "estimate") -> ModelInfo:
    """The F16 GGUF tensor list a llama-style decoder of ``shapes`` converts to (no file):
    what the stock mixes' rules are run on for a size estimate."""
    s = shapes
    q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    dims: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (s.n_embd, s.n_vocab))]
    for i in range(s.n_layer):
        b = f"blk.{i}."
        dims += [
            (b + "attn_norm.weight", (s.n_embd,)),
            (b + "attn_q.weight", (s.n_embd, q)),
            (b + "attn_k.weight", (s.n_embd, kv)),
            (b + "attn_v.weight", (s.n_embd, kv)),
            (b + "attn_output.weight", (q, s.n_embd)),
            (b + "ffn_norm.weight", (s.n_embd,)),
            (b + "ffn_gate.weight", (s.n_embd, s.n_ff)),
            (b + "ffn_up.weight", (s.n_embd, s.n_ff)),
            (b + "ffn_down.weight", (s.n_ff, s.n_embd)),
        ]
    dims.append(("output_norm.weight", (s.n_embd,)))
    if not s.tied:
        dims.append(("output.weight", (s.n_embd, s.n_vocab)))
    tensors = []
    for tname, shape in dims:
        typ = "F16" if len(shape) > 1 else "F32"
        tensors.append(
            TensorInfo(tname, shape, typ, allows_quantization(tname, len(shape)),
                       n_bytes=tensor_bytes(typ, shape))
        )  # fmt: skip
    return ModelInfo(
        paths=(Path(f"{name}.gguf"),), architecture=_LLAMA_LIKE.get(s.model_type, "llama"),
        name=name, n_layer=s.n_layer, n_embd=s.n_embd, n_head=s.n_head, n_head_kv=s.n_head_kv,
        n_ff=s.n_ff, n_expert=0, n_vocab=s.n_vocab, file_type=1, tensors=tuple(tensors),
        metadata={},
    )  # fmt: skip


#: a reference decoder (Llama-3-8B's shapes) whose per-mix bpw stands in where a result has a
#: parameter count but no shapes
REFERENCE = Shapes("llama", 32, 4096, 14336, 32, 8, 128, 128256, False)


@lru_cache(maxsize=1)
def reference_bpw() -> dict[str, float]:
    """Bits per weight of each search mix on ``REFERENCE`` (computed by the mix rules)."""
    model = shaped_model(REFERENCE, "reference")
    return {m: plan_from_preset(model, m).bpw for m in SEARCH_MIXES}


@dataclass(frozen=True)
class SizeEstimate:
    """Estimated bytes of the weights as F16 and as each stock mix, and of the KV cache."""

    f16_bytes: int | None
    sizes: Mapping[str, int]
    kv_bytes: int | None
    note: str


def estimate_sizes(parameters: int | None, shapes: Shapes | None, context: int) -> SizeEstimate:
    """The estimate for a model of ``parameters`` weights (the Hub's count) and, where known,
    ``shapes`` (its config). Labelled estimates: real files differ by the row-width fallbacks
    and extra tensors lwq cannot see from here."""
    kv = shapes.kv_cache_bytes(context) if shapes is not None else None
    kv_note = (
        f"KV cache: F16 at {context} tokens"
        if kv is not None
        else "KV cache not counted (no layer/head counts)"
    )
    if shapes is not None and shapes.llama_like:
        model = shaped_model(shapes)
        sizes = {m: plan_from_preset(model, m).size_bytes for m in SEARCH_MIXES}
        return SizeEstimate(
            model.tensor_data_bytes, sizes, kv,
            f"estimate: the stock mixes' rules on the config's shapes; {kv_note}; "
            "compute buffers not counted",
        )  # fmt: skip
    if parameters is None or parameters <= 0:
        return SizeEstimate(None, {}, kv, "no parameter count on the Hub: no size estimate")
    bpw = reference_bpw()
    sizes = {m: round(parameters * bpw[m] / 8) for m in SEARCH_MIXES}
    return SizeEstimate(
        parameters * 2, sizes, kv,
        "rough estimate: the parameter count at each mix's bits per weight on an 8B llama; "
        f"{kv_note}; compute buffers not counted",
    )  # fmt: skip


def fits(estimate: SizeEstimate, target_memory: int | None) -> dict[str, bool]:
    """For F16 and each mix, whether weights + KV cache fit in ``target_memory`` ({} without
    a target or an estimate); the weights alone where the KV cache is unknown
    (``kv_bytes`` None: say so where it is shown)."""
    if target_memory is None or estimate.f16_bytes is None:
        return {}
    kv = estimate.kv_bytes or 0
    out = {"F16": estimate.f16_bytes + kv <= target_memory}
    out.update({m: n + kv <= target_memory for m, n in estimate.sizes.items()})
    return out
