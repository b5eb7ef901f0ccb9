"""A fast reader of GGUF headers: metadata and tensor descriptors, no tensor data.

gguf-py's ``GGUFReader`` builds a numpy view for every part of every field, which costs about
3 s on a 49k-token vocabulary (each token string is a field part); lwq opens models many times
per job (inventory, hashes, plans, evaluation), so that cost was most of a short evaluation's
overhead. This reader parses the same layout (GGUF v2/v3, little-endian, as ggml's ``docs/gguf.md``
specifies it) with ``struct`` over the file memory-mapped (only the header's pages are read),
keeps string arrays as counts unless asked, and reads numeric arrays with ``np.frombuffer``.
It is the one reader of every GGUF lwq opens, models and imatrix files alike, and it trusts
nothing: every count and length is checked against the bytes left before it is used, and
the file is refused (naming it and the key or tensor) for anything llama.cpp would refuse
or that would make lwq misbehave — see ``read_header``.
Writing GGUF stays with gguf-py (``GGUFWriter``), except for the upcast, which copies each
key/value pair byte for byte (``GGUFHeader.kv_spans``).

Also here, for every reader of a model: the file-level naming rules of llama.cpp (the
shards of a split model, a tensor's layer and kind, the order its quantizer walks tensors in).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..jobs.errors import InputError, ModelFileError
from .type_catalog import TYPES_BY_ID, tensor_bytes

_SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+?)(?:\.weight|\.bias)?$")


def split_paths(path: Path) -> tuple[Path, ...]:
    """All shards of a split GGUF given any one of them; a plain file gives itself."""
    m = _SPLIT_RE.match(path.name)
    if not m:
        return (path,)
    count, no = int(m.group("count")), int(m.group("no"))
    if not 1 <= no <= count:
        raise ModelFileError(f"{path}: not a valid split name (shard {no} of {count})")
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
#: ggml's GGML_MAX_NAME (64, with the terminating NUL) and GGML_MAX_DIMS
MAX_TENSOR_NAME = 63
MAX_DIMS = 4

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
_U64 = struct.Struct("<Q")
_U32 = 4
_INTS = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
_FLOATS = frozenset({6, 12})
TYPE_NAMES: dict[int, str] = {
    0: "uint8",
    1: "int8",
    2: "uint16",
    3: "int16",
    4: "uint32",
    5: "int32",
    6: "float32",
    7: "bool",
    8: "string",
    9: "array",
    10: "uint64",
    11: "int64",
    12: "float64",
}
#: the least bytes a key/value record and a tensor-info record take
_MIN_KV, _MIN_TENSOR_INFO = 8 + 4 + 1, 8 + 4 + 8 + 4 + 8

#: hyper-parameters lwq and llama.cpp read as counts (``{arch}.<name>``): unsigned integers
#: below 2^32; the per-layer ones may be arrays of them (``get_key_or_arr``)
HPARAM_INT_KEYS = (
    "block_count",
    "context_length",
    "embedding_length",
    "feed_forward_length",
    "expert_feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "expert_count",
    "expert_used_count",
    "expert_shared_count",
    "leading_dense_block_count",
    "vocab_size",
    "rope.dimension_count",
)
_PER_LAYER_KEYS = frozenset(
    {"feed_forward_length", "attention.head_count", "attention.head_count_kv"}
)
_GENERAL_INT_KEYS = ("general.file_type", "general.quantization_version")
_GENERAL_STRING_KEYS = ("general.architecture", "general.name", "general.type")


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
    #: key -> (GGUF value type, element type of an array or None)
    kv_types: dict[str, tuple[int, int | None]] = field(default_factory=dict, repr=False)

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


def _short_repr(value: Any) -> str:
    """A value for an error message: one line (newlines escaped), at most 60 characters."""
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


class _Cursor:
    """Reads the header of a file of ``size`` bytes from ``buf`` (the file, mapped).

    Every count and length is checked against the bytes left in the file before it is
    used (a damaged file raises ``err``); a fixed-size field running past the end raises
    ``_Short`` (reported as a header that ends early)."""

    def __init__(
        self, path: Path, buf: bytes | mmap.mmap, size: int, err: type[InputError]
    ) -> None:
        self.path, self.buf, self.size, self.err, self.pos = path, buf, size, err, 0

    def fail(self, what: str, *, truncated: bool = False) -> NoReturn:
        how = "corrupted or truncated" if truncated else "corrupted"
        raise self.err(f"{self.path}: {how} GGUF ({what})")

    def need(self, n: int, what: str) -> None:
        """``n`` more bytes must be in the file (else it is damaged) and in ``buf``."""
        left = self.size - self.pos
        if n > left:
            raise self.err(
                f"{self.path}: corrupted or truncated GGUF ({what}: {n} bytes at byte "
                f"{self.pos}, the file has {left} left)"
            )
        if self.pos + n > len(self.buf):
            raise _Short()

    def take(self, fmt: str) -> Any:
        try:
            (v,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        except struct.error:
            raise _Short() from None
        self.pos += struct.calcsize("<" + fmt)
        return v

    def string(self, what: str) -> str:
        n = self.take("Q")
        end = self.pos + n
        if end > len(self.buf):
            self.need(n, f"the {n}-byte string of {what}")
        raw = self.buf[self.pos : end]
        self.pos = end
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        self.fail(f"invalid UTF-8 in {what} at byte {end - n}")

    def _past(self, end: int, key: str) -> NoReturn:
        if end > self.size:
            self.fail(
                f"a string of key {_short_repr(key)} runs past the end of the file", truncated=True
            )
        raise _Short()

    def skip_strings(self, count: int, key: str) -> None:
        """Step over ``count`` strings, checking that every one is valid UTF-8."""
        buf, pos, unpack = self.buf, self.pos, _U64.unpack_from
        begin = pos
        long_at: list[int] = []  # the length fields with a byte >= 0x80 (lengths >= 128)
        try:
            for _ in range(count):
                (n,) = unpack(buf, pos)
                if n > 127:
                    long_at.append(pos)
                pos += 8 + n
        except (struct.error, OverflowError):  # a length ran past ``buf`` (or past 2^63)
            self._past(pos + 8, key)
        if pos > len(buf):
            self._past(pos, key)
        self.pos = pos
        # One decode of the whole run, its non-ASCII length fields made ASCII: valid UTF-8
        # exactly when every string is (an ASCII byte never continues a multi-byte sequence,
        # and the other length fields are ASCII already).
        region = bytearray(buf[begin:pos])
        for at in long_at:
            region[at - begin : at - begin + 8] = b"\n" * 8
        if _is_utf8(region):
            return
        at = begin
        for i in range(count):
            (n,) = unpack(buf, at)
            if not _is_utf8(buf[at + 8 : at + 8 + n]):
                self.fail(f"invalid UTF-8 in {_short_repr(key)[1:-1]}[{i}] at byte {at + 8}")
            at += 8 + n

    def value(self, vtype: int, key: str, keep_strings: bool) -> tuple[Any, int | None]:
        """The value of ``key`` and, for an array, its element type."""
        if vtype == _STRING:
            return self.string(f"key {_short_repr(key)}"), None
        if vtype in _SCALARS:
            v = self.take(_SCALARS[vtype][0])
            return (bool(v) if vtype == 7 else v), None
        if vtype != _ARRAY:
            self.fail(f"key {_short_repr(key)} has unknown value type {vtype}")
        etype, count = self.take("I"), self.take("Q")
        if etype == _ARRAY:
            self.fail(
                f"key {_short_repr(key)} is an array of arrays (llama.cpp does not read those)"
            )
        if etype == _STRING:
            self.need(8 * count, f"the {count} strings of key {_short_repr(key)}")
            if keep_strings:
                return [self.string(f"{key}[{i}]") for i in range(count)], etype
            self.skip_strings(count, key)
            return StringArray(count), etype
        if etype not in _SCALARS:
            self.fail(f"key {_short_repr(key)} is an array of unknown type {etype}")
        dt = np.dtype(_SCALARS[etype][1])
        self.need(dt.itemsize * count, f"the {count} values of key {_short_repr(key)}")
        arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos)
        self.pos += dt.itemsize * count
        return arr.tolist(), etype


def _is_utf8(raw: bytes | bytearray) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Short(Exception):
    """The header runs past what was read: read more, or the file is truncated."""


def _check_file(path: Path, err: type[InputError]) -> int:
    if not path.exists():
        raise err(f"{path}: no such file")
    if path.is_dir():
        raise err(f"{path}: is a folder, not a GGUF file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise err(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    return path.stat().st_size


def read_header(
    path: str | Path,
    keep_strings: tuple[str, ...] = (),
    *,
    error: type[InputError] = ModelFileError,
    allow_no_tensors: bool = False,
) -> GGUFHeader:
    """Parse and validate a GGUF file's header; string arrays are kept only for keys in
    ``keep_strings``.

    Every count and length is checked against the bytes the file has left before it is
    used, so a damaged file costs time and memory in proportion to its size. Refused, with
    ``error`` (``ModelFileError``; the imatrix reader passes ``ImatrixError``) naming the
    file and the key or tensor: truncation, unknown value or tensor types, arrays of arrays,
    invalid UTF-8, duplicate keys or tensor names, a ``general.alignment`` that is not a
    power-of-two uint32, wrongly typed or non-finite values of the keys lwq and llama.cpp
    read (``check_values``), no tensors, more than 4 dims or a dim of 0, an ne0 that is not
    a multiple of the type's block, and tensor data misaligned, past the end or overlapping.
    A file without tensors is refused too, unless ``allow_no_tensors`` (a metadata-only first
    shard of a split model, ``gguf-split --no-tensor-first-split``).
    """
    p = Path(path)
    _check_file(p, error)
    with p.open("rb") as f:
        try:  # mapped, not read: only the header's pages are ever touched
            buf: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a file that cannot be mapped is read whole
            buf = f.read()
    try:
        return _parse(p, buf, len(buf), keep_strings, error, allow_no_tensors)
    except _Short:
        raise error(f"{p}: corrupted or truncated GGUF (header ends early)") from None
    finally:
        if isinstance(buf, mmap.mmap):
            with contextlib.suppress(BufferError):  # a view still alive: closed with it
                buf.close()


def _parse(
    p: Path,
    buf: bytes | mmap.mmap,
    size: int,
    keep: tuple[str, ...],
    err: type[InputError],
    allow_no_tensors: bool = False,
) -> GGUFHeader:
    c = _Cursor(p, buf, size, err)
    c.pos = 4
    version = c.take("I")
    if version not in (2, 3):
        raise err(f"{p}: corrupted GGUF or unsupported version (version {version}; 2 or 3 read)")
    n_tensors, n_kv = c.take("Q"), c.take("Q")
    if n_kv * _MIN_KV > size - c.pos or n_tensors * _MIN_TENSOR_INFO > size - c.pos:
        c.fail(
            f"header counts {n_tensors} tensors and {n_kv} keys, more than its "
            f"{size} bytes can hold",
            truncated=True,
        )
    if n_tensors == 0 and not allow_no_tensors:
        raise err(f"{p}: GGUF has no tensors (an empty or vocabulary-only file?)")
    md: dict[str, Any] = {}
    spans: dict[str, tuple[int, int]] = {}
    types: dict[str, tuple[int, int | None]] = {}
    for i in range(n_kv):
        at = c.pos
        key = c.string(f"key #{i}")
        if not key:
            c.fail(f"key #{i} is empty")
        if key in md:
            c.fail(f"duplicate key {_short_repr(key)}")
        vtype = c.take("I")
        md[key], etype = c.value(vtype, key, key in keep)
        types[key] = (vtype, etype)
        spans[key] = (at, c.pos)
    align = _alignment(c, md, types)
    check_values(p, md, types, err)
    infos = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = c.string(f"the name of tensor #{i}")
        if len(name.encode()) > MAX_TENSOR_NAME:
            c.fail(f"tensor name {_short_repr(name)} is longer than {MAX_TENSOR_NAME} bytes")
        if name in names:
            c.fail(f"duplicate tensor name {name!r}")
        names.add(name)
        n_dims = c.take("I")
        if not 1 <= n_dims <= MAX_DIMS:
            c.fail(f"tensor {name!r} has {n_dims} dims (1 to {MAX_DIMS})")
        shape = tuple(c.take("Q") for _ in range(n_dims))
        infos.append((name, shape, c.take("I"), c.take("Q")))
    start = (c.pos + align - 1) // align * align
    tensors = []
    for name, shape, tid, off in infos:
        qt = TYPES_BY_ID.get(tid)
        if qt is None:
            raise err(f"{p}: unknown tensor type: tensor {name!r} has type id {tid}")
        if min(shape) < 1:
            c.fail(f"tensor {name!r} has shape {list(shape)} (every dim must be >= 1)")
        if shape[0] % qt.block_size:
            c.fail(
                f"tensor {name!r} of type {qt.name} has ne0 = {shape[0]}, not a multiple of "
                f"its block size {qt.block_size}"
            )
        if off % align:
            c.fail(f"tensor {name!r} data offset {off} is not a multiple of the alignment {align}")
        n_bytes = tensor_bytes(qt.name, shape)
        if start + off + n_bytes > size:
            raise err(f"{p}: truncated: tensor {name!r} ends past the end of the file")
        tensors.append(RawTensor(name, shape, tid, start + off, n_bytes))
    by_offset = sorted(tensors, key=lambda t: t.data_offset)
    for a, b in itertools.pairwise(by_offset):
        if a.data_offset + a.n_bytes > b.data_offset:
            c.fail(f"the data of tensors {a.name!r} and {b.name!r} overlap")
    return GGUFHeader(p, version, md, tuple(tensors), start, spans, types)


def _alignment(c: _Cursor, md: dict[str, Any], types: dict[str, tuple[int, int | None]]) -> int:
    """``general.alignment``: a uint32 power of two, as llama.cpp requires (else 32)."""
    key = "general.alignment"
    if key not in md:
        return DEFAULT_ALIGNMENT
    a = md[key]
    if types[key] != (_U32, None):
        c.fail(
            f"key {_short_repr(key)} must be a uint32, not {_type_name(types[key])} {_short_repr(a)}"
        )
    if a <= 0 or a & (a - 1):
        c.fail(f"key {_short_repr(key)} is {a}, not a power of 2")
    return int(a)


def _type_name(t: tuple[int, int | None]) -> str:
    vtype, etype = t
    if etype is None:
        return TYPE_NAMES.get(vtype, str(vtype))
    return f"array of {TYPE_NAMES.get(etype, str(etype))}"


def check_values(
    path: Path,
    md: dict[str, Any],
    types: dict[str, tuple[int, int | None]],
    err: type[InputError] = ModelFileError,
) -> None:
    """Refuse wrongly typed values of the keys lwq and llama.cpp read, naming the key.

    ``general.architecture``/``name``/``type`` are strings; ``general.file_type``,
    ``general.quantization_version`` and the hyper-parameter counts (``HPARAM_INT_KEYS``,
    per-layer arrays allowed where llama.cpp allows them) are unsigned integers below 2^32;
    every float of ``general.*`` and ``{arch}.*`` is finite."""

    def bad(key: str, want: str) -> NoReturn:
        raise err(
            f"{path}: key {_short_repr(key)} must be {want}, not {_type_name(types[key])} "
            f"{_short_repr(md[key])}"
        )

    def uint(v: Any, vtype: int | None) -> bool:
        return vtype in _INTS and 0 <= v < 1 << 32

    for key in _GENERAL_STRING_KEYS:
        if key in md and types[key] != (_STRING, None):
            bad(key, "a string")
    ints = list(_GENERAL_INT_KEYS)
    arch = md.get("general.architecture")
    if isinstance(arch, str):
        ints += [f"{arch}.{k}" for k in HPARAM_INT_KEYS]
    for key in ints:
        if key not in md:
            continue
        vtype, etype = types[key]
        v = md[key]
        if vtype == _ARRAY and key.removeprefix(f"{arch}.") in _PER_LAYER_KEYS:
            if etype not in _INTS or not all(uint(x, etype) for x in v):
                bad(key, "an array of unsigned integers below 2^32")
        elif etype is not None or not uint(v, vtype):
            bad(key, "an unsigned integer below 2^32")
    prefixes = ("general.", f"{arch}.") if isinstance(arch, str) else ("general.",)
    for key, (vtype, etype) in types.items():
        if (vtype in _FLOATS or etype in _FLOATS) and key.startswith(prefixes):
            v = md[key]
            if not all(map(math.isfinite, v if etype is not None else (v,))):
                bad(key, "finite")
