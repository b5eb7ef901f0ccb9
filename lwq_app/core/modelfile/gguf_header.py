"""A fast reader of GGUF headers: metadata and tensor descriptors, no tensor data.

gguf-py's ``GGUFReader`` builds a numpy view for every part of every field, which costs about
3 s on a 49k-token vocabulary (each token string is a field part); lwq opens models many times
per job (inventory, hashes, plans, evaluation), so that cost was most of a short evaluation's
overhead. This reader parses the same layout (GGUF v2/v3, little-endian, as ggml's ``docs/gguf.md``
specifies it) with ``struct`` over one read of the header,
keeps string arrays as counts unless asked, and reads numeric arrays with ``np.frombuffer``.
Writing GGUF stays with gguf-py (``GGUFWriter``), except for the upcast, which copies each
key/value pair byte for byte (``GGUFHeader.kv_spans``).

Also here, for every reader of a model: the file-level naming rules of llama.cpp (the
shards of a split model, a tensor's layer and kind, the order its quantizer walks tensors in).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.errors import ModelFileError
from .type_catalog import TYPES_BY_ID, tensor_bytes

_SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+?)(?:\.weight|\.bias)?$")


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


def tensor_kind(name: str) -> str:
    """Short kind of a tensor: ``attn_q``, ``ffn_down_exps``, ``token_embd``, ``output_norm``…"""
    m = _LAYER_RE.match(name)
    if m:
        return m.group(2)
    return name.removesuffix(".weight").removesuffix(".bias")


def tensor_layer(name: str) -> int | None:
    m = _LAYER_RE.match(name)
    return int(m.group(1)) if m else None


def llama_order_key(name: str) -> tuple[int, str]:
    """Sort key of llama.cpp's ``weight_name_comparer``: layer (non-layer first), then name."""
    layer = tensor_layer(name)
    return (-1 if layer is None else layer, name)


GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGUF value types: id -> (struct code, numpy dtype)
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("B", "u1"),
    1: ("b", "i1"),
    2: ("H", "<u2"),
    3: ("h", "<i2"),
    4: ("I", "<u4"),
    5: ("i", "<i4"),
    6: ("f", "<f4"),
    7: ("?", "?"),
    10: ("Q", "<u8"),
    11: ("q", "<i8"),
    12: ("d", "<f8"),
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class StringArray:
    """A string array left unread (``count`` items); tokenizer vocabularies mostly."""

    count: int

    def __str__(self) -> str:
        return f"<{self.count} items>"


@dataclass(frozen=True)
class RawTensor:
    name: str
    shape: tuple[int, ...]  # ne0 first
    type_id: int
    data_offset: int  # absolute, in the file
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[RawTensor, ...]
    data_start: int
    #: key -> (start, end) byte offsets of its whole key/value record in the file
    kv_spans: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)

    @property
    def alignment(self) -> int:
        return int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT

    def tensor(self, name: str) -> RawTensor | None:
        for t in self.tensors:
            if t.name == name:
                return t
        return None

    def tensor_array(self, t: RawTensor) -> np.ndarray:
        """The tensor's raw bytes memory-mapped: F32/F16/BF16 typed, other types as uint8."""
        qt = TYPES_BY_ID[t.type_id]
        dtype = {"F32": np.float32, "F16": np.float16}.get(qt.name, np.uint8)
        count = t.n_bytes // np.dtype(dtype).itemsize
        arr = np.memmap(self.path, dtype=dtype, mode="r", offset=t.data_offset, shape=(count,))
        if dtype is np.uint8:
            return arr.reshape(*reversed(t.shape[1:]), -1)
        return arr.reshape(tuple(reversed(t.shape)))


class _Cursor:
    def __init__(self, path: Path, buf: bytes) -> None:
        self.path, self.buf, self.pos = path, buf, 0

    def take(self, fmt: str) -> Any:
        try:
            (v,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        except struct.error:
            raise _Short() from None
        self.pos += struct.calcsize("<" + fmt)
        return v

    def string(self) -> str:
        n = self.take("Q")
        end = self.pos + n
        if end > len(self.buf):
            raise _Short()
        raw = self.buf[self.pos : end]
        self.pos = end
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(
                f"{self.path}: corrupted GGUF (invalid UTF-8 string at byte {end - n})"
            ) from None

    def skip_strings(self, count: int) -> None:
        buf, pos, unpack = self.buf, self.pos, struct.unpack_from
        try:
            for _ in range(count):
                pos += 8 + unpack("<Q", buf, pos)[0]
        except struct.error:
            raise _Short() from None
        if pos > len(buf):
            raise _Short()
        self.pos = pos

    def value(self, vtype: int, key: str, keep_strings: bool) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype in _SCALARS:
            v = self.take(_SCALARS[vtype][0])
            return bool(v) if vtype == 7 else v
        if vtype != _ARRAY:
            raise ModelFileError(
                f"{self.path}: corrupted GGUF (key {key!r} has value type {vtype})"
            )
        etype, count = self.take("I"), self.take("Q")
        if etype == _STRING:
            if keep_strings:
                return [self.string() for _ in range(count)]
            self.skip_strings(count)
            return StringArray(count)
        if etype not in _SCALARS:
            raise ModelFileError(
                f"{self.path}: corrupted GGUF (key {key!r} is an array of type {etype})"
            )
        dt = np.dtype(_SCALARS[etype][1])
        end = self.pos + dt.itemsize * count
        if end > len(self.buf):
            raise _Short()
        arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos)
        self.pos = end
        return arr.tolist()


class _Short(Exception):
    """The header runs past what was read: read more, or the file is truncated."""


def _check_file(path: Path) -> int:
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a GGUF file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    return path.stat().st_size


def read_header(path: str | Path, keep_strings: tuple[str, ...] = ()) -> GGUFHeader:
    """Parse a GGUF file's header; string arrays are read only for keys in ``keep_strings``.

    Raises ``ModelFileError`` naming the file (and tensor) for anything malformed."""
    p = Path(path)
    size = _check_file(p)
    want = min(size, 16 << 20)
    while True:
        with p.open("rb") as f:
            buf = f.read(want)
        try:
            return _parse(p, buf, size, keep_strings)
        except _Short:
            if want >= size:
                raise ModelFileError(
                    f"{p}: corrupted or truncated GGUF (header ends early)"
                ) from None
            want = min(size, want * 4)


def _parse(p: Path, buf: bytes, size: int, keep: tuple[str, ...]) -> GGUFHeader:
    c = _Cursor(p, buf)
    c.pos = 4
    version = c.take("I")
    if version not in (2, 3):
        raise ModelFileError(f"{p}: GGUF version {version} is not supported (2 or 3)")
    n_tensors, n_kv = c.take("Q"), c.take("Q")
    if n_tensors > size or n_kv > size:
        raise ModelFileError(f"{p}: corrupted GGUF (counts {n_tensors} tensors, {n_kv} keys)")
    md: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}
    for _ in range(n_kv):
        at = c.pos
        key = c.string()
        md[key] = c.value(c.take("I"), key, key in keep)
        spans[key] = (at, c.pos)
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        n_dims = c.take("I")
        if n_dims > 8:
            raise ModelFileError(f"{p}: corrupted GGUF (tensor {name!r} has {n_dims} dims)")
        shape = tuple(c.take("Q") for _ in range(n_dims))
        infos.append((name, shape, c.take("I"), c.take("Q")))
    align = int(md.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    start = (c.pos + align - 1) // align * align
    tensors = []
    for name, shape, tid, off in infos:
        qt = TYPES_BY_ID.get(tid)
        if qt is None:
            raise ModelFileError(f"{p}: unknown tensor type: tensor {name!r} has type id {tid}")
        n_bytes = tensor_bytes(qt.name, shape)
        if start + off + n_bytes > size:
            raise ModelFileError(f"{p}: truncated: tensor {name!r} ends past the end of the file")
        tensors.append(RawTensor(name, shape, tid, start + off, n_bytes))
    return GGUFHeader(p, version, md, tuple(tensors), start, spans)
