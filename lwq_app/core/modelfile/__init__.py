"""Model files: the GGUF header reader, the tensor inventory and its summary, the ggml type
catalog, the imatrix file formats, the upcast job and every hash (files, texts, tensor data,
the model-hash job).
"""

from __future__ import annotations

from .gguf_header import (
    GGUFHeader,
    llama_order_key,
    read_header,
    split_paths,
    tensor_kind,
    tensor_layer,
)
from .hashing import (
    HashRequest,
    HashResult,
    hash_model,
    model_hash,
    per_tensor_hashes,
    record_model_hash,
    sha256_file,
    sha256_text,
    tensor_data_hash,
)
from .imatrix_file import (
    Imatrix,
    ImatrixEntry,
    read_imatrix,
    write_imatrix,
)
from .inventory import (
    KIND_ORDER,
    ModelInfo,
    TensorInfo,
    allows_quantization,
    kind_sort_key,
    open_model,
)
from .summary import (
    ModelSummary,
    TypeShare,
    is_float_model,
    summarize,
)
from .type_catalog import (
    CANDIDATES,
    PLANNABLE,
    QuantType,
    effective_type,
    get_type,
    tensor_bytes,
    type_by_id,
    valid_types,
)
from .upcast import (
    Transform,
    UpcastRequest,
    UpcastResult,
    upcast,
)

__all__ = [
    "CANDIDATES",
    "KIND_ORDER",
    "PLANNABLE",
    "GGUFHeader",
    "HashRequest",
    "HashResult",
    "Imatrix",
    "ImatrixEntry",
    "ModelInfo",
    "ModelSummary",
    "QuantType",
    "TensorInfo",
    "Transform",
    "TypeShare",
    "UpcastRequest",
    "UpcastResult",
    "allows_quantization",
    "effective_type",
    "get_type",
    "hash_model",
    "is_float_model",
    "kind_sort_key",
    "llama_order_key",
    "model_hash",
    "open_model",
    "per_tensor_hashes",
    "read_header",
    "read_imatrix",
    "record_model_hash",
    "sha256_file",
    "sha256_text",
    "split_paths",
    "summarize",
    "tensor_bytes",
    "tensor_data_hash",
    "tensor_kind",
    "tensor_layer",
    "type_by_id",
    "upcast",
    "valid_types",
    "write_imatrix",
]
