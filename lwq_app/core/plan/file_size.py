"""The size on disk of the GGUF the quantize job writes for a plan, from the format alone.

llama.cpp's quantizer (``llama_model_quantize_impl``) copies the source's key/value pairs
(those of the first shard), sets ``general.quantization_version`` and ``general.file_type``
as uint32, drops the ``split.*`` keys, applies lwq's ``kv_overrides``
(``quantize.lwq_metadata``: strings, and integers written as 4-byte values) and writes one
tensor info per tensor (``ggml_n_dims``: trailing dims of 1 dropped). The header is padded to
32 bytes, and so is every tensor's data, the last one included: the pinned llama.cpp lays the
file out with gguf's default alignment even where the source sets ``general.alignment`` (it
copies that key without applying it, so such an output is inconsistent and the quantize job's
check refuses it).
Everything but the tensor data and its padding is fixed for a model, an imatrix and an output
name, so that part is computed once (``file_layout``, cached) and a plan then costs one pass
over its tensor sizes.

The ``lwq.plan.file`` key holds the output's sidecar name; without an ``output`` the longest
name the quantize job writes (127 bytes) is assumed, so the figure is an upper bound that any
output name meets (exact to the byte for the name of ``output``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..jobs.errors import PlanError
from ..modelfile.gguf_header import DEFAULT_ALIGNMENT, read_header
from ..modelfile.imatrix_file import read_imatrix
from ..modelfile.inventory import ModelInfo
from .quant_plan import QuantPlan
from .quantize import lwq_metadata, sidecar_path

#: the longest string value llama.cpp's kv_overrides hold (``char val_str[128]``)
MAX_OVERRIDE_STRING = 127
#: keys the quantizer sets as uint32, whatever the source had
_U32_KEYS = ("general.quantization_version", "general.file_type")
#: keys it removes (``LLM_KV_SPLIT_*``)
_DROPPED_KEYS = ("split.no", "split.count", "split.tensors.count")
_HEADER = 4 + 4 + 8 + 8  # magic, version, tensor count, key/value count
_SHA256_HEX = "0" * 64  # the plan hash's length; its value does not change any size


@dataclass(frozen=True)
class FileSize:
    """Bytes of a GGUF file: tensor data, alignment padding (after the header and after each
    tensor) and metadata (header, key/value pairs, tensor infos)."""

    tensor_data: int
    padding: int
    metadata: int

    @property
    def total(self) -> int:
        return self.tensor_data + self.padding + self.metadata


@dataclass(frozen=True)
class FileLayout:
    """What of a quantized file does not depend on the plan's types."""

    metadata: int
    alignment: int
    fingerprint: str

    def file_size(self, sizes: Iterable[int]) -> FileSize:
        """The file of tensors of these data sizes (every tensor of the model, any order)."""
        a = self.alignment
        data = pad = 0
        for n in sizes:
            data += n
            pad += -n % a
        pad += -self.metadata % a
        return FileSize(data, pad, self.metadata)

    def plan_size(self, plan: QuantPlan, model_name: str) -> FileSize:
        """The file of ``plan``; ``PlanError`` for a plan of another model than this layout's
        (``model_name``, for the message)."""
        if plan.model_fingerprint != self.fingerprint:
            raise PlanError(
                f"plan is for another model (fingerprint {plan.model_fingerprint}, "
                f"{model_name} is {self.fingerprint})"
            )
        return self.file_size(t.size_bytes for t in plan.tensors)


def _kv_bytes(key: str, value: int | str) -> int:
    """One key/value record: key (u64 length + bytes), u32 type, value (u32, or a string)."""
    head = 8 + len(key.encode()) + 4
    return head + (4 if isinstance(value, int) else 8 + len(value.encode()))


def _tensor_info_bytes(name: str, shape: tuple[int, ...]) -> int:
    n_dims = len(shape)
    while n_dims > 1 and shape[n_dims - 1] == 1:  # ggml_n_dims
        n_dims -= 1
    return 8 + len(name.encode()) + 4 + 8 * n_dims + 4 + 8


_cache: dict[tuple[object, ...], FileLayout] = {}
_lock = threading.Lock()


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def file_layout(
    model: ModelInfo, *, imatrix: Path | None = None, output: Path | None = None
) -> FileLayout:
    """The metadata bytes and alignment of the file quantize writes from ``model`` (with
    ``imatrix``, into ``output``; None: the longest sidecar name), cached per file state."""
    sidecar = "x" * MAX_OVERRIDE_STRING if output is None else sidecar_path(Path(output)).name
    key = (
        tuple(_stamp(p) for p in model.paths),
        None if imatrix is None else (str(imatrix), *_stamp(Path(imatrix))[1:]),
        sidecar,
    )
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    header = read_header(model.path, allow_no_tensors=len(model.paths) > 1)
    records = {k: end - start for k, (start, end) in header.kv_spans.items()}
    for k in _DROPPED_KEYS:
        records.pop(k, None)
    for k in _U32_KEYS:
        records[k] = _kv_bytes(k, 0)
    imx = None if imatrix is None else read_imatrix(imatrix)
    for k, v in lwq_metadata(_SHA256_HEX, sidecar, imatrix, imx):
        records[k] = _kv_bytes(k, v)
    infos = sum(_tensor_info_bytes(t.name, t.shape) for t in model.tensors)
    layout = FileLayout(
        metadata=_HEADER + sum(records.values()) + infos,
        alignment=DEFAULT_ALIGNMENT,
        fingerprint=model.fingerprint(),
    )
    with _lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = layout
    return layout


def predict_file_size(
    plan: QuantPlan,
    model: ModelInfo,
    *,
    imatrix: Path | None = None,
    output: Path | None = None,
) -> FileSize:
    """The exact size of the GGUF ``quantize`` writes for ``plan`` (see the module docstring;
    ``output`` None: an upper bound, exact for a 127-byte sidecar name). ``PlanError`` for a
    plan of another model."""
    return file_layout(model, imatrix=imatrix, output=output).plan_size(plan, model.path.name)
