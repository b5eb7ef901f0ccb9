"""Model inventory: what is in a GGUF file, tensor by tensor.

Reads metadata and tensor descriptors with ``ggufread`` (header only, no tensor data) and
describes each tensor in llama.cpp's terms: layer, kind, shape (ne0 first), parameter count,
current type and whether llama.cpp would quantize it (``tensor_allows_quantization`` in
``src/llama-quant.cpp``). Split files (``-00001-of-00003.gguf``) are opened as one model.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .ggufread import GGUFHeader, StringArray, read_header
from .qtypes import TYPES_BY_ID, tensor_bytes

_SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+?)(?:\.weight|\.bias)?$")

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


def tensor_kind(name: str) -> str:
    """Short kind of a tensor: ``attn_q``, ``ffn_down_exps``, ``token_embd``, ``output_norm``…"""
    m = _LAYER_RE.match(name)
    if m:
        return m.group(2)
    return name.removesuffix(".weight").removesuffix(".bias")


def tensor_layer(name: str) -> int | None:
    m = _LAYER_RE.match(name)
    return int(m.group(1)) if m else None


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


def llama_order_key(name: str) -> tuple[int, str]:
    """Sort key of llama.cpp's ``weight_name_comparer``: layer (non-layer first), then name."""
    layer = tensor_layer(name)
    return (-1 if layer is None else layer, name)


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

    def llama_order(self) -> list[TensorInfo]:
        """Tensors in the order llama.cpp's quantizer walks them."""
        return sorted(self.tensors, key=lambda t: llama_order_key(t.name))

    def fingerprint(self) -> str:
        """Hash of architecture, tensor names and shapes: identifies the model a plan is for."""
        h = hashlib.sha256(self.architecture.encode())
        for t in sorted(self.tensors, key=lambda t: t.name):
            h.update(f"|{t.name}:{'x'.join(map(str, t.shape))}".encode())
        return h.hexdigest()[:16]

    def tensor_data_hash(self) -> str:
        """SHA-256 over every tensor's data bytes, in llama.cpp's order (metadata excluded)."""
        return tensor_data_hash(self)


def split_paths(path: Path) -> tuple[Path, ...]:
    """All shards of a split GGUF given any one of them; a plain file gives itself."""
    m = _SPLIT_RE.match(path.name)
    if not m:
        return (path,)
    count = int(m.group("count"))
    stem = m.group("stem")
    paths = tuple(
        path.with_name(f"{stem}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)
    )
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise ModelFileError(f"{path}: split model is missing shard(s): {', '.join(missing)}")
    return paths


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
    """Read the inventory of a GGUF model; raises ``ModelFileError`` naming the file."""
    paths = split_paths(Path(path))
    tensors: list[TensorInfo] = []
    metadata: dict[str, Any] = {}
    for i, p in enumerate(paths):
        header = read_header(p)
        if i == 0:
            metadata = read_metadata(header)
        for rt in header.tensors:
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


def tensor_data_hash(model: ModelInfo, chunk: int = 64 << 20) -> str:
    """SHA-256 over all tensor data in llama.cpp order; independent of metadata and padding."""
    h = hashlib.sha256()
    handles = [p.open("rb") for p in model.paths]
    try:
        for t in model.llama_order():
            f = handles[t.file_index]
            f.seek(t.data_offset)
            left = t.n_bytes
            while left:
                buf = f.read(min(chunk, left))
                if not buf:
                    raise ModelFileError(
                        f"{model.paths[t.file_index]}: truncated in tensor {t.name}"
                    )
                h.update(buf)
                left -= len(buf)
    finally:
        for f in handles:
            f.close()
    return h.hexdigest()


def per_tensor_hashes(model: ModelInfo) -> dict[str, str]:
    """SHA-256 of each tensor's data bytes, by name."""
    out: dict[str, str] = {}
    handles = [p.open("rb") for p in model.paths]
    try:
        for t in model.tensors:
            f = handles[t.file_index]
            f.seek(t.data_offset)
            out[t.name] = hashlib.sha256(f.read(t.n_bytes)).hexdigest()
    finally:
        for f in handles:
            f.close()
    return out
