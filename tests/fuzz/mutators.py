"""Seeded, structure-aware mutators for lwq's input formats.

Every case is reproducible on its own: ``case_rng(fmt, seed, index)`` seeds a
``random.Random`` from a string, so ``(format, seed, index)`` names one input exactly.

* GGUF (models and imatrix files): ``parse_gguf`` maps a real file into a table of fields
  (magic, version, counts, each key/value record with its key length, key, value type, value,
  array type/count/elements; each tensor descriptor with its name, n_dims, dims, type, offset;
  the alignment padding). A mutation is a list of ``Op`` (a byte patch: replace ``size`` bytes
  at ``off`` by ``data``; a splice inside the header re-pads the data section so the rest stays
  aligned) plus a description; the primitive ops can be dropped one by one to minimize.
* Legacy ``.dat`` imatrix: the same, over its int32/name/float layout.
* Plan JSON and size strings: text mutations (return the new text and a description).
"""

from __future__ import annotations

import json
import math
import random
import struct
from dataclasses import dataclass, field
from typing import Any

BOUNDARY_U64 = (0, 1, 2, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1)
BOUNDARY_U32 = (0, 1, 2, 2**31 - 1, 2**31, 2**32 - 1)
BOUNDARY_I32 = (0, 1, -1, 2, 2**31 - 1, -(2**31), 4096, 4097, 1_000_001)

# GGUF value types (docs/gguf.md): id -> struct code
SCALAR_FMT = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY = 8, 9
INVALID_VTYPES = (13, 14, 255, 2**16, 2**31, 2**32 - 1)
#: ggml type ids: valid ones (F32, F16, Q4_0, Q4_1, Q8_0, Q2_K..Q6_K, IQ2_XXS, BF16) and holes
TENSOR_TYPES_VALID = (0, 1, 2, 3, 8, 10, 11, 12, 13, 14, 16, 30)
TENSOR_TYPES_INVALID = (4, 5, 40, 41, 99, 255, 2**31, 2**32 - 1)

BAD_UTF8 = (
    b"\xff\xfe",
    b"\xc0\x80",
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\x80",
    b"abc\xe2\x82",  # truncated sequence
)
ODD_STRINGS = (b"", b"\x00", b"a\nb", b"\x1b[31mred", "é".encode(), b"blk.0.attn_q.weight")


def case_rng(fmt: str, seed: int, index: int) -> random.Random:
    return random.Random(f"lwq-fuzz:{fmt}:{seed}:{index}")


# --- byte patches ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """Replace ``size`` bytes at ``off`` with ``data``; ``header`` splices re-pad the data."""

    off: int
    size: int
    data: bytes
    desc: str
    header: bool = False  # a splice inside the GGUF header (re-pad to keep data aligned)
    truncate: bool = False  # cut the file at ``off`` (size/data unused)


@dataclass
class Mutation:
    ops: list[Op]
    desc: str
    #: extra ops not expressible as a patch: (kind, arg)
    n_kv_delta: int = 0


def apply_ops(buf: bytes, ops: list[Op], layout: GGUFLayout | None = None) -> bytes:
    """Apply ``ops`` (in order of decreasing offset, so offsets stay valid)."""
    out = bytearray(buf)
    header_delta = 0
    cut: int | None = None
    for op in sorted(ops, key=lambda o: -o.off):
        if op.truncate:
            cut = op.off if cut is None else min(cut, op.off)
            continue
        if op.off > len(out):
            continue
        out[op.off : op.off + op.size] = op.data
        if op.header:
            header_delta += len(op.data) - op.size
    if layout is not None and header_delta:
        # keep the tensor data where the (unchanged) offsets say it is: re-pad after the header
        end = layout.header_end + header_delta
        data_start = layout.data_start + header_delta
        align = layout.alignment
        new_start = (end + align - 1) // align * align
        body = bytes(out[data_start:])
        out = out[:end] + b"\x00" * (new_start - end) + body
    if cut is not None:
        out = out[:cut]
    return bytes(out)


# --- GGUF layout ----------------------------------------------------------------------------


@dataclass
class Field:
    kind: str  # n_tensors, n_kv, key_len, key, vtype, value, str_len, str, arr_type, arr_count,
    # name_len, name, n_dims, dim, ttype, toff, pad
    off: int
    size: int
    fmt: str = ""  # struct code of integer fields
    value: Any = None
    owner: str = ""  # key or tensor name


@dataclass
class KV:
    key: str
    start: int
    end: int
    vtype: int
    value_off: int  # where the value type field starts
    value: Any = None


@dataclass
class TensorDesc:
    name: str
    start: int
    end: int
    dims: list[int]
    ttype: int
    offset: int
    dims_off: int
    ttype_off: int
    toff_off: int


@dataclass
class GGUFLayout:
    buf: bytes
    fields: list[Field] = field(default_factory=list)
    kvs: list[KV] = field(default_factory=list)
    tensors: list[TensorDesc] = field(default_factory=list)
    header_end: int = 0
    data_start: int = 0
    alignment: int = 32

    def by_kind(self, *kinds: str) -> list[Field]:
        return [f for f in self.fields if f.kind in kinds]

    def kv(self, key: str) -> KV | None:
        return next((k for k in self.kvs if k.key == key), None)


def parse_gguf(buf: bytes) -> GGUFLayout:
    """The field table of a *valid* GGUF v3 file (the seeds are valid)."""
    lay = GGUFLayout(buf)
    pos = 0

    def num(kind: str, fmt: str, owner: str = "") -> int:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        (v,) = struct.unpack_from("<" + fmt, buf, pos)
        lay.fields.append(Field(kind, pos, size, fmt, v, owner))
        pos += size
        return v

    def string(len_kind: str, kind: str, owner: str = "") -> str:
        nonlocal pos
        n = num(len_kind, "Q", owner)
        s = buf[pos : pos + n].decode()
        lay.fields.append(Field(kind, pos, n, "", s, owner or s))
        pos += n
        return s

    assert buf[:4] == b"GGUF"
    lay.fields.append(Field("magic", 0, 4))
    pos = 4
    num("version", "I")
    n_tensors = num("n_tensors", "Q")
    n_kv = num("n_kv", "Q")
    for _ in range(n_kv):
        start = pos
        key = string("key_len", "key")
        voff = pos
        vtype = num("vtype", "I", key)
        value: Any
        if vtype == STRING:
            value = string("str_len", "str", key)
        elif vtype == ARRAY:
            etype = num("arr_type", "I", key)
            count = num("arr_count", "Q", key)
            if etype == STRING:
                value = [string("str_len", "str", key) for _ in range(count)]
            else:
                size = struct.calcsize("<" + SCALAR_FMT[etype])
                lay.fields.append(
                    Field("arr_data", pos, size * count, SCALAR_FMT[etype], None, key)
                )
                value = list(struct.unpack_from(f"<{count}{SCALAR_FMT[etype]}", buf, pos))
                pos += size * count
        else:
            value = num("value", SCALAR_FMT[vtype], key)
        lay.kvs.append(KV(key, start, pos, vtype, voff, value))
    for _ in range(n_tensors):
        start = pos
        name = string("name_len", "name")
        n_dims = num("n_dims", "I", name)
        dims_off = pos
        dims = [num("dim", "Q", name) for _ in range(n_dims)]
        ttype_off = pos
        ttype = num("ttype", "I", name)
        toff_off = pos
        off = num("toff", "Q", name)
        lay.tensors.append(
            TensorDesc(name, start, pos, dims, ttype, off, dims_off, ttype_off, toff_off)
        )
    lay.header_end = pos
    kv_align = lay.kv("general.alignment")
    lay.alignment = int(kv_align.value) if kv_align else 32
    lay.data_start = (pos + lay.alignment - 1) // lay.alignment * lay.alignment
    if lay.data_start > pos:
        lay.fields.append(Field("pad", pos, lay.data_start - pos))
    return lay


def _int_bytes(fmt: str, v: int) -> bytes:
    size = struct.calcsize("<" + fmt)
    return (v % (1 << (8 * size))).to_bytes(size, "little")


def _set_int(f: Field, v: int) -> Op:
    return Op(
        f.off, f.size, _int_bytes(f.fmt, v), f"{f.kind}[{f.owner or '-'}]@{f.off}: {f.value} -> {v}"
    )


def _gguf_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def _kv_value(vtype: int, value: Any, etype: int = 0) -> bytes:
    """Bytes of a value type field and its value."""
    if vtype == STRING:
        return struct.pack("<I", STRING) + _gguf_string(value)
    if vtype == ARRAY:
        body = b"".join(
            _gguf_string(v) if etype == STRING else struct.pack("<" + SCALAR_FMT[etype], v)
            for v in value
        )
        return struct.pack("<IIQ", ARRAY, etype, len(value)) + body
    return struct.pack("<I", vtype) + struct.pack("<" + SCALAR_FMT[vtype], value)


#: replacement values of a wrong type / odd value for any key
_ODD_VALUES: tuple[tuple[str, int, Any, int], ...] = (
    ("string 'x'", STRING, b"x", 0),
    ("string bad utf-8", STRING, b"\xff\xfe", 0),
    ("f32 NaN", 6, math.nan, 0),
    ("f32 inf", 6, math.inf, 0),
    ("f64 -inf", 12, -math.inf, 0),
    ("f64 1e308", 12, 1e308, 0),
    ("i32 -1", 5, -1, 0),
    ("i64 min", 11, -(2**63), 0),
    ("u64 max", 10, 2**64 - 1, 0),
    ("u32 0", 4, 0, 0),
    ("u32 3", 4, 3, 0),
    ("bool true", 7, True, 0),
    ("empty u32 array", ARRAY, [], 4),
    ("empty string array", ARRAY, [], STRING),
    ("string array", ARRAY, [b"a", b"b"], STRING),
    ("f32 array NaN", ARRAY, [math.nan, 1.0], 6),
    ("i32 array", ARRAY, [7, -7], 5),
    ("array of bad utf-8", ARRAY, [b"ok", b"\xc0\x80"], STRING),
)

_ALIGN_VALUES = (0, 1, 3, 7, 16, 64, 4096, 2**31, 2**32 - 1)


def _replace_value(lay: GGUFLayout, kv: KV, choice: tuple[str, int, Any, int]) -> Op:
    name, vtype, value, etype = choice
    data = _kv_value(vtype, value, etype)
    return Op(
        kv.value_off, kv.end - kv.value_off, data, f"value of {kv.key!r} -> {name}", header=True
    )


def _insert_kv(lay: GGUFLayout, key: bytes, value_bytes: bytes, desc: str) -> list[Op]:
    """Insert a record after the last KV and bump n_kv."""
    at = lay.kvs[-1].end if lay.kvs else lay.by_kind("n_kv")[0].off + 8
    n_kv = lay.by_kind("n_kv")[0]
    return [
        Op(at, 0, _gguf_string(key) + value_bytes, desc, header=True),
        Op(n_kv.off, 8, _int_bytes("Q", n_kv.value + 1), f"n_kv {n_kv.value} -> {n_kv.value + 1}"),
    ]


def _string_ops(rng: random.Random, f: Field, len_field: Field) -> Op:
    """Replace the bytes of a string (key, value, element, tensor name)."""
    r = rng.random()
    if r < 0.45:  # invalid UTF-8, same length where possible
        bad = rng.choice(BAD_UTF8)
        return Op(
            len_field.off,
            8 + f.size,
            _gguf_string(bad),
            f"{f.kind}[{f.owner}] -> {bad!r}",
            header=True,
        )
    if r < 0.75:
        s = rng.choice(ODD_STRINGS)
        return Op(
            len_field.off, 8 + f.size, _gguf_string(s), f"{f.kind}[{f.owner}] -> {s!r}", header=True
        )
    n = rng.choice((4096, 70_000, 1 << 20))
    return Op(
        len_field.off,
        8 + f.size,
        _gguf_string(b"a" * n),
        f"{f.kind}[{f.owner}] -> 'a'*{n}",
        header=True,
    )


def mutate_gguf(lay: GGUFLayout, rng: random.Random, *, imatrix: bool = False) -> Mutation:
    """One to three primitive mutations of a GGUF file, chosen by field kind."""
    n = rng.choice((1, 1, 1, 2, 3))
    ops: list[Op] = []
    for _ in range(n):
        ops.extend(_one_gguf_op(lay, rng, imatrix))
    return Mutation(ops, "; ".join(o.desc for o in ops))


def _one_gguf_op(lay: GGUFLayout, rng: random.Random, imatrix: bool) -> list[Op]:
    buf = lay.buf
    kinds = [
        ("count", 14),
        ("vtype", 8),
        ("string", 10),
        ("value", 12),
        ("dup_kv", 3),
        ("drop_kv", 3),
        ("alignment", 5),
        ("tensor", 18),
        ("truncate", 10),
        ("flip", 10),
        ("version", 2),
    ]
    if imatrix:
        kinds.append(("tensor_data", 14))
    total = sum(w for _, w in kinds)
    x = rng.uniform(0, total)
    kind = kinds[-1][0]
    for kind, w in kinds:  # noqa: B007 (the chosen kind is used after the loop)
        x -= w
        if x <= 0:
            break
    if kind == "count":
        fs = lay.by_kind(
            "n_tensors", "n_kv", "key_len", "str_len", "arr_count", "name_len", "n_dims"
        )
        f = rng.choice(fs)
        if f.fmt == "I":
            vals = (*BOUNDARY_U32, f.value + 1, max(0, f.value - 1), 9)
        else:
            vals = (*BOUNDARY_U64, f.value + 1, max(0, f.value - 1), len(buf), len(buf) // 8)
        return [_set_int(f, rng.choice(vals))]
    if kind == "vtype":
        f = rng.choice(lay.by_kind("vtype", "arr_type"))
        v = rng.choice((*range(13), *INVALID_VTYPES))
        return [_set_int(f, v)]
    if kind == "string":
        strs = lay.by_kind("key", "str", "name")
        i = rng.randrange(len(strs))
        f = strs[i]
        len_field = next(g for g in lay.fields if g.off == f.off - 8 and g.size == 8)
        return [_string_ops(rng, f, len_field)]
    if kind == "value":
        interesting = [
            k
            for k in lay.kvs
            if k.key.startswith(("general.", "imatrix.", "tokenizer.ggml.tokens"))
            or k.key.split(".", 1)[-1]
            in (
                "block_count",
                "embedding_length",
                "feed_forward_length",
                "attention.head_count",
                "attention.head_count_kv",
                "expert_count",
                "vocab_size",
                "context_length",
            )
        ]
        kv = rng.choice(interesting or lay.kvs)
        return [_replace_value(lay, kv, rng.choice(_ODD_VALUES))]
    if kind == "dup_kv":
        kv = rng.choice(lay.kvs)
        record = buf[kv.start : kv.end]
        n_kv = lay.by_kind("n_kv")[0]
        return [
            Op(lay.kvs[-1].end, 0, record, f"duplicate key {kv.key!r}", header=True),
            Op(n_kv.off, 8, _int_bytes("Q", n_kv.value + 1), f"n_kv -> {n_kv.value + 1}"),
        ]
    if kind == "drop_kv":
        kv = rng.choice(lay.kvs)
        n_kv = lay.by_kind("n_kv")[0]
        return [
            Op(kv.start, kv.end - kv.start, b"", f"drop key {kv.key!r}", header=True),
            Op(n_kv.off, 8, _int_bytes("Q", n_kv.value - 1), f"n_kv -> {n_kv.value - 1}"),
        ]
    if kind == "alignment":
        kv = lay.kv("general.alignment")
        if rng.random() < 0.3:
            choice = rng.choice(_ODD_VALUES)
            value = _kv_value(choice[1], choice[2], choice[3])
            desc = f"general.alignment = {choice[0]}"
        else:
            a = rng.choice(_ALIGN_VALUES)
            value, desc = _kv_value(4, a), f"general.alignment = u32 {a}"
        if kv is not None:
            return [Op(kv.value_off, kv.end - kv.value_off, value, desc, header=True)]
        return _insert_kv(lay, b"general.alignment", value, desc)
    if kind == "tensor":
        return _tensor_op(lay, rng)
    if kind == "truncate":
        bounds = sorted({f.off for f in lay.fields} | {f.off + f.size for f in lay.fields})
        at = rng.choice(bounds) if rng.random() < 0.8 else rng.randrange(0, len(buf))
        return [Op(at, 0, b"", f"truncate at {at} of {len(buf)}", truncate=True)]
    if kind == "flip":
        limit = lay.data_start if rng.random() < 0.85 else len(buf)
        at = rng.randrange(4, max(5, limit))
        v = buf[at] ^ 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(256)
        return [Op(at, 1, bytes([v]), f"byte {at}: {buf[at]:02x} -> {v:02x}")]
    if kind == "version":
        f = lay.by_kind("version")[0]
        return [_set_int(f, rng.choice((0, 1, 2, 4, 2**32 - 1)))]
    # tensor_data: imatrix values
    t = rng.choice(lay.tensors)
    start = lay.data_start + t.offset
    n = 1
    for d in t.dims:
        n *= d
    i = rng.randrange(max(1, n))
    v = rng.choice(
        (math.nan, math.inf, -math.inf, -1.0, -1e-30, 0.0, 3.4e38, 1e-45, 1e18, 9.9e17, 1e30)
    )
    return [Op(start + 4 * i, 4, struct.pack("<f", v), f"{t.name}[{i}] = {v}")]


def _tensor_op(lay: GGUFLayout, rng: random.Random) -> list[Op]:
    t = rng.choice(lay.tensors)
    r = rng.randrange(6)
    if r == 0:  # a dim
        j = rng.randrange(len(t.dims))
        v = rng.choice((0, 1, 33, t.dims[j] + 1, t.dims[j] * 2, 2**31, 2**32, 2**63, 2**64 - 1))
        return [
            Op(
                t.dims_off + 8 * j,
                8,
                _int_bytes("Q", v),
                f"tensor {t.name!r} dim {j}: {t.dims[j]} -> {v}",
            )
        ]
    if r == 1:  # type
        v = rng.choice((*TENSOR_TYPES_VALID, *TENSOR_TYPES_INVALID))
        return [Op(t.ttype_off, 4, _int_bytes("I", v), f"tensor {t.name!r} type {t.ttype} -> {v}")]
    if r == 2:  # offset
        other = rng.choice(lay.tensors)
        v = rng.choice(
            (
                0,
                t.offset + 1,
                t.offset + 16,
                other.offset,
                len(lay.buf),
                2**63,
                2**64 - 32,
                t.offset - 32,
            )
        )
        return [
            Op(t.toff_off, 8, _int_bytes("Q", v), f"tensor {t.name!r} offset {t.offset} -> {v}")
        ]
    if r == 3:  # duplicate name
        other = rng.choice(lay.tensors)
        nf = next(f for f in lay.fields if f.kind == "name" and f.owner == t.name)
        return [
            Op(
                nf.off - 8,
                8 + nf.size,
                _gguf_string(other.name.encode()),
                f"tensor {t.name!r} renamed {other.name!r}",
                header=True,
            )
        ]
    if r == 4:  # n_dims
        f = next(f for f in lay.fields if f.kind == "n_dims" and f.owner == t.name)
        v = rng.choice((0, 1, 2, 3, 4, 5, 9, 2**31))
        return [_set_int(f, v)]
    # drop a tensor descriptor and decrement the count
    nt = lay.by_kind("n_tensors")[0]
    return [
        Op(t.start, t.end - t.start, b"", f"drop tensor {t.name!r}", header=True),
        Op(nt.off, 8, _int_bytes("Q", nt.value - 1), f"n_tensors -> {nt.value - 1}"),
    ]


# --- legacy .dat ----------------------------------------------------------------------------


@dataclass
class DatLayout:
    buf: bytes
    ints: list[Field] = field(default_factory=list)  # int32 fields: n, len, ncall, nval, chunks
    names: list[Field] = field(default_factory=list)
    values: list[Field] = field(default_factory=list)

    @property
    def bounds(self) -> list[int]:
        fs = self.ints + self.names + self.values
        return sorted({f.off for f in fs} | {f.off + f.size for f in fs})


def parse_dat(buf: bytes) -> DatLayout:
    lay = DatLayout(buf)
    pos = 0

    def i32(kind: str, owner: str = "") -> int:
        nonlocal pos
        (v,) = struct.unpack_from("<i", buf, pos)
        lay.ints.append(Field(kind, pos, 4, "i", v, owner))
        pos += 4
        return v

    n = i32("n")
    for _ in range(n):
        ln = i32("len")
        name = buf[pos : pos + ln].decode()
        lay.names.append(Field("name", pos, ln, "", name, name))
        pos += ln
        i32("ncall", name)
        nval = i32("nval", name)
        lay.values.append(Field("values", pos, 4 * nval, "f", None, name))
        pos += 4 * nval
    if pos < len(buf):
        i32("chunk_count")
        ln = i32("ds_len")
        lay.names.append(Field("dataset", pos, ln, "", None, "dataset"))
    return lay


def mutate_dat(lay: DatLayout, rng: random.Random) -> Mutation:
    ops: list[Op] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        ops.append(_one_dat_op(lay, rng))
    return Mutation(ops, "; ".join(o.desc for o in ops))


def _one_dat_op(lay: DatLayout, rng: random.Random) -> Op:
    buf = lay.buf
    r = rng.random()
    if r < 0.3:
        f = rng.choice(lay.ints)
        v = rng.choice((*BOUNDARY_I32, f.value + 1, f.value - 1, len(buf), len(buf) // 4))
        return Op(
            f.off,
            4,
            struct.pack("<i", (v + 2**31) % 2**32 - 2**31),
            f"{f.kind}[{f.owner}] {f.value} -> {v}",
        )
    if r < 0.5:
        at = rng.choice(lay.bounds) if rng.random() < 0.7 else rng.randrange(len(buf))
        if rng.random() < 0.3:  # inside a values run
            v = rng.choice(lay.values)
            at = v.off + rng.randrange(max(1, v.size))
        return Op(at, 0, b"", f"truncate at {at} of {len(buf)}", truncate=True)
    if r < 0.65:
        f = rng.choice(lay.names)
        bad = rng.choice(BAD_UTF8)
        data = (bad * (f.size // len(bad) + 1))[: f.size] if f.size else b""
        return Op(f.off, f.size, data, f"{f.kind}[{f.owner}] bytes -> {bad!r}…")
    if r < 0.8:
        f = rng.choice(lay.values)
        i = rng.randrange(max(1, f.size // 4))
        v = rng.choice((math.nan, math.inf, -math.inf, -1.0, 0.0, 3.4e38, 1e18, 9.9e17, 1e-45))
        return Op(f.off + 4 * i, 4, struct.pack("<f", v), f"values[{f.owner}][{i}] = {v}")
    if r < 0.9:
        at = rng.randrange(len(buf))
        v = buf[at] ^ (1 << rng.randrange(8))
        return Op(at, 1, bytes([v]), f"byte {at}: {buf[at]:02x} -> {v:02x}")
    extra = rng.choice((b"\x00", b"\xff" * 4, struct.pack("<ii", 7, 2**31 - 1), b"junk" * 100))
    return Op(len(buf), 0, extra, f"append {extra[:8]!r}… ({len(extra)} bytes)")


# --- plan JSON ------------------------------------------------------------------------------


def _nest(depth: int, obj: bool) -> str:
    return ('{"a":' * depth + "1" + "}" * depth) if obj else ("[" * depth + "]" * depth)


def mutate_plan(text: str, rng: random.Random) -> tuple[str | bytes, str]:
    """A mutated plan file (text, or bytes for encoding damage) and what was done."""
    data = json.loads(text)
    tensors = list(data["tensors"])
    r = rng.randrange(16)
    if r == 0:
        d = rng.choice((50, 500, 1000, 5000, 100_000))
        where = rng.choice(("note", "tensors", "model", "version", "root"))
        nest = _nest(d, rng.random() < 0.5)
        if where == "root":
            return nest, f"root = nesting depth {d}"
        data[where] = "@@NEST@@"
        return json.dumps(data).replace('"@@NEST@@"', nest), f"{where} = nesting depth {d}"
    if r == 1:
        digits = rng.choice((20, 400, 4300, 4301, 5000, 50_000))
        where = rng.choice(("version", "size_bytes", "bpw", "n_layer", "tensor"))
        big = "9" * digits
        if where == "tensor":
            data["tensors"][rng.choice(tensors)] = "@@BIG@@"
        elif where == "n_layer":
            data["model"]["n_layer"] = "@@BIG@@"
        else:
            data[where] = "@@BIG@@"
        return json.dumps(data).replace('"@@BIG@@"', big), f"{where} = {digits}-digit integer"
    if r == 2:
        key = rng.choice(
            ("format", "version", "model", "tensors", "preset", "with_imatrix", "note")
        )
        v = rng.choice((None, 1, -1, 1.5, True, "", "x", [], {}, ["a"], {"a": 1}))
        data[key] = v
        return json.dumps(data), f"{key} = {v!r}"
    if r == 3:
        t = rng.choice(tensors)
        v = rng.choice((None, 1, 2.5, True, [], {}, ["Q4_K"], {"type": "Q4_K"}))
        data["tensors"][t] = v
        return json.dumps(data), f"tensors[{t}] = {v!r}"
    if r == 4:
        name = rng.choice(
            ("foo.weight", "", "blk.999.attn_q.weight", "\u0000", "é" * 3, "x" * 10000)
        )
        data["tensors"][name] = "Q4_K"
        return json.dumps(data), f"unknown tensor {name[:20]!r}"
    if r == 5:
        t = rng.choice(tensors)
        ty = rng.choice(
            (
                "Q9_Z",
                "",
                "q4_k",
                "q4_k_m",
                "Q4_K_M",
                "F64",
                "I8",
                " Q4_K",
                "Q4_K\n",
                "IQ2_XXS",
                "Q4_0_4_4",
                "TQ1_0",
                "MXFP4",
                "\u00e9",
                "F32",
                "BF16",
            )
        )
        data["tensors"][t] = ty
        return json.dumps(data), f"tensors[{t}] = {ty!r}"
    if r == 6:
        key = rng.choice(list(data))
        del data[key]
        return json.dumps(data), f"missing key {key!r}"
    if r == 7:
        if rng.random() < 0.5:
            t = rng.choice(tensors)
            del data["tensors"][t]
            return json.dumps(data), f"missing tensor {t!r}"
        data["tensors"] = {}
        return json.dumps(data), "tensors = {}"
    if r == 8:  # duplicate keys (textual)
        t = rng.choice(tensors)
        ty = rng.choice(("Q4_K", "BOGUS", "F16"))
        out = text.replace(f'"{t}": ', f'"{t}": "{ty}",\n  "{t}": ', 1)
        if rng.random() < 0.5:
            out = out.replace('"format": ', '"format": "other", "format": ', 1)
        return out, f"duplicate key {t!r} (first {ty})"
    if r == 9:
        lit = rng.choice(("NaN", "Infinity", "-Infinity"))
        where = rng.choice(("version", "bpw", "size_bytes", "tensor", "with_imatrix", "n_layer"))
        if where == "tensor":
            data["tensors"][rng.choice(tensors)] = "@@LIT@@"
        elif where == "n_layer":
            data["model"]["n_layer"] = "@@LIT@@"
        else:
            data[where] = "@@LIT@@"
        return json.dumps(data).replace('"@@LIT@@"', lit), f"{where} = {lit}"
    if r == 10:
        at = rng.randrange(len(text))
        return text[:at], f"truncate at {at} of {len(text)}"
    if r == 11:
        raw = text.encode()
        bad = rng.choice((b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x00"))
        at = rng.randrange(len(raw))
        pre = rng.choice((b"", b"\xef\xbb\xbf", b"\xff\xfe"))
        return pre + raw[:at] + bad + raw[at:], f"bytes {bad!r} at {at}, prefix {pre!r}"
    if r == 12:
        arch = rng.choice(("gpt2", "", None, 1, "LLAMA"))
        data["model"]["architecture"] = arch
        return json.dumps(data), f"model.architecture = {arch!r}"
    if r == 13:
        t = rng.choice(
            ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_gate_inp.weight")
        )
        ty = rng.choice(("Q4_K", "Q8_0", "F16", "F32"))
        if t in data["tensors"] or rng.random() < 0.5:
            data["tensors"][t] = ty
        return json.dumps(data), f"non-quantized {t} = {ty}"
    if r == 14:
        v = rng.choice(("", " ", "null", "[]", "{}", '"lwq-plan"', "0", "\n" * 10, "{" * 3))
        return v, f"whole file = {v!r}"
    at = rng.randrange(len(text))
    ch = rng.choice(("\x00", "}", "{", '"', ",", "\\", "\u2028", "\ufeff"))
    return text[:at] + ch + text[at:], f"insert {ch!r} at {at}"


# --- size strings ---------------------------------------------------------------------------

SIZE_SEEDS = ("3.9GB", "3.6GiB", "512MB", "1TB", "100KiB", "1B", ".5GB", "8GiB", "0.25TiB")


def mutate_size(rng: random.Random) -> tuple[str, str]:
    base = rng.choice(SIZE_SEEDS)
    r = rng.randrange(14)
    if r == 0:
        n = rng.choice((300, 309, 310, 400, 5000))
        return "1" * n + rng.choice(("GB", "B", "TiB")), f"{n}-digit number"
    if r == 1:
        n = rng.choice((300, 400, 5000))
        return "0." + "0" * n + "1GB", f"{n} leading fractional zeros"
    if r == 2:
        s = rng.choice(("-", "+", "--", "−", "±")) + base
        return s, f"sign {s[:2]!r}"
    if r == 3:
        num = base.rstrip("BKMGTi")
        u = rng.choice(
            ("gb", "Gb", "GIB", "XB", "PB", "EB", "bytes", "", "G", "i", "KiBB", "ＧＢ", "GB GB")
        )
        return num + u, f"unit {u!r}"
    if r == 4:
        d = rng.choice(("١٢", "３", "𝟗", "²", "½", "٣.٥", "1_000", "1,5", "0x10", "1e9", "1E3"))
        return d + "GB", f"number {d!r}"
    if r == 5:
        s = rng.choice(
            ("nan", "NaN", "inf", "-inf", "infinity", "1e400", "nanGB", "infGB", "InfinityGB")
        )
        return s, f"special {s!r}"
    if r == 6:
        ws = rng.choice((" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\x0b", "\x00"))
        return rng.choice((ws + base, base + ws, base[:1] + ws + base[1:])), f"whitespace {ws!r}"
    if r == 7:
        return base.replace("B", "\nB", 1), "embedded newline"
    if r == 8:
        return rng.choice(("", " ", "GB", ".", ".GB", "1..5GB", "1.GB", "..5GB")), "degenerate"
    if r == 9:
        return rng.choice(("0GB", "0B", "0.0000001B", "0.4B", "0.5B", "1e-9GB")), "zero-ish"
    if r == 10:
        n = rng.choice((1000, 100_000))
        return "1" + " " * n + "GB", f"{n} spaces"
    if r == 11:
        return base + base, "repeated"
    if r == 12:
        return "9" * 20 + "TiB", "above 2^64 bytes"
    at = rng.randrange(len(base) + 1)
    ch = chr(rng.choice((0, 7, 0x1B, 0x7F, 0x85, 0x2028, 0xFFFD, 0x1F600)))
    return base[:at] + ch + base[at:], f"insert U+{ord(ch):04X}"


BPW_SEEDS = ("4.5", "inf", "-inf", "nan", "0", "-1", "1e400", "33", "1e-320", "2.0000001", "16")


def mutate_bpw(rng: random.Random) -> tuple[str, str]:
    """Values argparse's ``type=float`` accepts (the job checks the number)."""
    s = rng.choice((*BPW_SEEDS, "  3 ", "1_0", "+4", "-0.0", "9" * 400, "8"))
    return s, f"bpw {s[:20]!r}"


# --- preset / type names and --set edits -------------------------------------------------

NAME_SEEDS = ("Q4_K_M", "Q8_0", "IQ2_XXS", "F16", "Q4_K", "Q6_K", "BF16", "Q4_0", "COPY")


def mutate_name(rng: random.Random) -> tuple[str, str, str]:
    """A preset/type name and a ``--set`` tensor name: (name, tensor, description)."""
    base = rng.choice(NAME_SEEDS)
    r = rng.randrange(10)
    if r == 0:
        name = base.lower()
    elif r == 1:
        name = rng.choice(("", " ", "\n", "\x00", "BOGUS", "Q9_Z", "LLAMA_FTYPE_MOSTLY_Q4_K_M"))
    elif r == 2:
        name = base + rng.choice(("\n", " ", "\t", "\x1b[2J", "\u2028", "é"))
    elif r == 3:
        name = "Q" * rng.choice((100, 5000))
    elif r == 4:
        name = rng.choice(("１", "Ｑ４_Ｋ_Ｍ", "Q4_K_M\ud800"[:6], "q4_k_m", "Q4-K-M", "4"))
    else:
        name = base
    tensors = (
        "blk.0.attn_q.weight",
        "output_norm.weight",
        "token_embd.weight",
        "output.weight",
        "blk.0.ffn_gate_inp.weight",
        "blk.1.ffn_up_exps.weight",
        "nope.weight",
        "",
        "a\nb",
        "blk.0.attn_q.weight\x00",
        "*",
        "blk.*",
    )
    tensor = rng.choice(tensors)
    return name, tensor, f"name {name[:30]!r}, --set {tensor[:30]!r}={name[:20]!r}"
