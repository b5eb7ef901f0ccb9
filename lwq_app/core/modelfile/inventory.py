"""Model inventory: what is in a GGUF file, tensor by tensor.

Reads metadata and tensor descriptors with ``gguf_header`` (header only, no tensor data) and
describes each tensor in llama.cpp's terms: layer, kind, shape (ne0 first), parameter count,
current type and whether llama.cpp would quantize it (``tensor_allows_quantization`` in
``src/llama-quant.cpp``). Split files (``-00001-of-00003.gguf``) are opened as one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..jobs.errors import ModelFileError
from ..jobs.progress import CancelToken, ProgressSink
from .gguf_header import (
    GGUFHeader,
    StringArray,
    llama_order_key,
    read_header,
    split_paths,
    tensor_kind,
    tensor_layer,
)
from .hashing import per_tensor_hashes, sha256_text, tensor_data_hash
from .type_catalog import TYPES_BY_ID, tensor_bytes

# names that moved to gguf_header (naming rules) and hashing, still importable from here
__all__ = [
    "KIND_ORDER",
    "ModelInfo",
    "TensorInfo",
    "allows_quantization",
    "as_model_info",
    "kind_sort_key",
    "llama_order_key",
    "open_model",
    "per_tensor_hashes",
    "read_metadata",
    "split_paths",
    "tensor_data_hash",
    "tensor_kind",
    "tensor_layer",
]

#: tensor kinds in the column order of every layers × kinds view (heatmaps, the plan editor);
#: other kinds follow alphabetically
KIND_ORDER: tuple[str, ...] = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
    "ffn_gate_exps",
    "ffn_up_exps",
    "ffn_down_exps",
)
_KIND_RANK = {k: i for i, k in enumerate(KIND_ORDER)}


def kind_sort_key(kind: str) -> tuple[int, str]:
    """Sort key of a tensor kind (``attn_q``…): ``KIND_ORDER`` first, then alphabetical, so
    the heatmap and the plan grid put the same column in the same place."""
    return (_KIND_RANK.get(kind, len(KIND_ORDER)), kind)


#: substrings that keep a tensor out of quantization (tensor_allows_quantization)
_NEVER_QUANTIZED = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
)
_NEVER_QUANTIZED_EXACT = ("position_embd.weight", "token_types.weight")


def allows_quantization(name: str, n_dims: int, quantize_output: bool = True) -> bool:
    """Whether llama.cpp would quantize a tensor of this name (mainline rules, non-GLM arches)."""
    if n_dims < 2 or not name.endswith("weight"):
        return False
    if not quantize_output and name == "output.weight":
        return False
    if name in _NEVER_QUANTIZED_EXACT:
        return False
    return not any(s in name for s in _NEVER_QUANTIZED)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a model, as llama.cpp sees it."""

    name: str
    shape: tuple[int, ...]  # ne0 first, as in GGUF and ggml
    type: str
    quantizable: bool
    file_index: int = 0
    data_offset: int = 0
    n_bytes: int = 0

    @property
    def layer(self) -> int | None:
        return tensor_layer(self.name)

    @property
    def kind(self) -> str:
        return tensor_kind(self.name)

    @property
    def n_params(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def ne0(self) -> int:
        return self.shape[0]

    @property
    def n_experts(self) -> int:
        return self.shape[2] if len(self.shape) >= 3 else 1

    def bytes_as(self, type_name: str) -> int:
        return tensor_bytes(type_name, self.shape)


@dataclass(frozen=True)
class ModelInfo:
    """Metadata and tensor inventory of a GGUF model (single file or split)."""

    paths: tuple[Path, ...]
    architecture: str
    name: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_expert: int
    n_vocab: int
    file_type: int | None
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def n_gqa(self) -> int:
        return 0 if self.n_head_kv == 0 else self.n_head // self.n_head_kv

    @property
    def tied_embeddings(self) -> bool:
        return not any(t.name == "output.weight" for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.n_params for t in self.tensors)

    @property
    def tensor_data_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @cached_property
    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"{self.path.name} has no tensor {name!r}") from None

    def to_json(self) -> dict[str, Any]:
        """The summary ``lwq inspect --json`` prints (metadata left out)."""
        return {
            "paths": [str(p) for p in self.paths],
            "architecture": self.architecture,
            "name": self.name,
            "n_layer": self.n_layer,
            "n_embd": self.n_embd,
            "n_head": self.n_head,
            "n_head_kv": self.n_head_kv,
            "n_gqa": self.n_gqa,
            "n_ff": self.n_ff,
            "n_expert": self.n_expert,
            "n_vocab": self.n_vocab,
            "tied_embeddings": self.tied_embeddings,
            "n_params": self.n_params,
            "tensor_data_bytes": self.tensor_data_bytes,
            "tensors": [
                {
                    "name": t.name,
                    "layer": t.layer,
                    "kind": t.kind,
                    "shape": list(t.shape),
                    "n_params": t.n_params,
                    "type": t.type,
                    "quantizable": t.quantizable,
                    "bytes": t.n_bytes,
                }
                for t in self.tensors
            ],
        }

    def llama_order(self) -> list[TensorInfo]:
        """Tensors in the order llama.cpp's quantizer walks them."""
        return sorted(self.tensors, key=lambda t: llama_order_key(t.name))

    def fingerprint(self) -> str:
        """Hash of architecture, tensor names and shapes: identifies the model a plan is for."""
        names = "".join(
            f"|{t.name}:{'x'.join(map(str, t.shape))}"
            for t in sorted(self.tensors, key=lambda t: t.name)
        )
        return sha256_text(self.architecture + names)[:16]

    def tensor_data_hash(
        self, *, progress: ProgressSink | None = None, cancel: CancelToken | None = None
    ) -> str:
        """SHA-256 over every tensor's data bytes, in llama.cpp's order (metadata excluded)."""
        return tensor_data_hash(self, progress=progress, cancel=cancel)


def _open_reader(path: Path) -> Any:
    """gguf-py's full reader, for code that rewrites a file (upcast); errors name the file."""
    from gguf import GGUFReader  # gguf-py; imported here so the module loads fast

    read_header(path)  # the fast parse finds any malformed header first, naming the file
    try:
        return GGUFReader(path, "r")
    except (ValueError, IndexError, OverflowError, UnicodeDecodeError, TypeError) as e:
        raise ModelFileError(
            f"{path}: corrupted or truncated GGUF ({type(e).__name__}: {e})"
        ) from None


def read_metadata(header: GGUFHeader) -> dict[str, Any]:
    """Metadata keys and values; tokenizer arrays are summarised by length (``<N items>``)."""
    out: dict[str, Any] = {}
    for key, value in header.metadata.items():
        if isinstance(value, StringArray) or (
            isinstance(value, list) and key.startswith("tokenizer.ggml.")
        ):
            out[key] = f"<{len(value) if isinstance(value, list) else value.count} items>"
        else:
            out[key] = value
    return out


def open_model(path: str | Path) -> ModelInfo:
    """Read the inventory of a GGUF model; raises ``ModelFileError`` naming the file.

    Every header is validated by ``read_header`` (counts, types, tensors, the keys read
    below: their values are unsigned integers, so ``int()`` of them cannot fail); a split
    model's tensor names are unique across its shards."""
    paths = split_paths(Path(path))
    tensors: list[TensorInfo] = []
    metadata: dict[str, Any] = {}
    seen: set[str] = set()
    for i, p in enumerate(paths):
        header = read_header(p, allow_no_tensors=len(paths) > 1)
        if i == 0:
            metadata = read_metadata(header)
        for rt in header.tensors:
            if rt.name in seen:
                raise ModelFileError(f"{p}: tensor {rt.name!r} is in more than one shard")
            seen.add(rt.name)
            tensors.append(
                TensorInfo(
                    name=rt.name,
                    shape=rt.shape,
                    type=TYPES_BY_ID[rt.type_id].name,
                    quantizable=allows_quantization(rt.name, len(rt.shape)),
                    file_index=i,
                    data_offset=rt.data_offset,
                    n_bytes=rt.n_bytes,
                )
            )
    if not tensors:
        raise ModelFileError(f"{paths[0]}: GGUF has no tensors (an empty or vocabulary-only file?)")
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(f"{paths[0]}: no general.architecture key: not a model GGUF")

    def key(name: str, default: int = 0) -> int:
        v = metadata.get(f"{arch}.{name}", default)
        if isinstance(v, list):  # per-layer arrays: llama.cpp reads layer 0 for these rules
            v = v[0] if v else default
        return int(v)

    n_head = key("attention.head_count")
    vocab = metadata.get("tokenizer.ggml.tokens")
    n_vocab = key("vocab_size")
    if not n_vocab and isinstance(vocab, str) and vocab.startswith("<"):
        n_vocab = int(vocab[1:].split()[0])
    ft = metadata.get("general.file_type")
    return ModelInfo(
        paths=paths,
        architecture=arch,
        name=str(metadata.get("general.name", paths[0].stem)),
        n_layer=key("block_count"),
        n_embd=key("embedding_length"),
        n_head=n_head,
        n_head_kv=key("attention.head_count_kv", n_head),
        n_ff=key("feed_forward_length"),
        n_expert=key("expert_count"),
        n_vocab=n_vocab,
        file_type=None if ft is None else int(ft),
        tensors=tuple(tensors),
        metadata=metadata,
    )


def as_model_info(model: str | Path | ModelInfo) -> ModelInfo:
    """``model`` itself if it is already opened, else ``open_model(model)``."""
    return model if isinstance(model, ModelInfo) else open_model(model)
