"""Hostile files (issue #9): every malformed GGUF model, imatrix GGUF or legacy ``.dat`` is
refused with one project error naming the file (and the key or tensor) — no traceback, no
hang, no garbage accepted. The malformed files are written byte by byte here (``struct``) or
patched from the fixtures; each case is small and fast.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from lwq_app.core.jobs.errors import ImatrixError, ModelFileError
from lwq_app.core.modelfile.gguf_header import read_header
from lwq_app.core.modelfile.imatrix_file import read_imatrix, write_imatrix
from lwq_app.core.modelfile.inventory import open_model

# --- a GGUF writer of our own, so every field can be made wrong -----------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_CODE = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?"}
_CODE |= {U64: "Q", I64: "q", F64: "d"}
T_F32, T_F16, T_Q4_1 = 0, 1, 3


def gstr(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, vtype: int, value: object) -> bytes:
    """A key/value record; ``value`` is packed by ``vtype`` (bytes are taken as they are)."""
    if isinstance(value, bytes) and vtype != STR:
        payload = value
    elif vtype == STR:
        payload = gstr(value)  # type: ignore[arg-type]
    else:
        payload = struct.pack("<" + _CODE[vtype], value)
    return gstr(key) + struct.pack("<I", vtype) + payload


def arr(key: str, etype: int, items: list) -> bytes:
    if etype == STR:
        body = b"".join(gstr(x) for x in items)
    else:
        body = struct.pack(f"<{len(items)}{_CODE[etype]}", *items)
    return kv(key, ARR, struct.pack("<IQ", etype, len(items)) + body)


def tinfo(name: str, shape: tuple[int, ...], type_id: int, offset: int) -> bytes:
    return (
        gstr(name)
        + struct.pack(f"<I{len(shape)}Q", len(shape), *shape)
        + struct.pack("<IQ", type_id, offset)
    )


def gguf(
    kvs: list[bytes],
    infos: list[bytes],
    data: bytes,
    *,
    n_tensors: int | None = None,
    align: int = 32,
) -> bytes:
    head = b"GGUF" + struct.pack(
        "<IQQ", 3, len(infos) if n_tensors is None else n_tensors, len(kvs)
    )
    head += b"".join(kvs) + b"".join(infos)
    head += b"\0" * (-len(head) % align)
    return head + data


def base_kvs(**replace: bytes | None) -> list[bytes]:
    """Metadata of a tiny llama model; ``replace`` swaps (bytes) or drops (None) a record."""
    rows = {
        "general.architecture": kv("general.architecture", STR, "llama"),
        "general.name": kv("general.name", STR, "tiny"),
        "general.file_type": kv("general.file_type", U32, 0),
        "llama.block_count": kv("llama.block_count", U32, 1),
        "llama.embedding_length": kv("llama.embedding_length", U32, 32),
        "llama.attention.head_count": kv("llama.attention.head_count", U32, 4),
        "llama.attention.layer_norm_rms_epsilon": kv(
            "llama.attention.layer_norm_rms_epsilon", F32, 1e-5
        ),
        "tokenizer.ggml.tokens": arr("tokenizer.ggml.tokens", STR, ["a", "b", "c", "d"]),
    }
    for key, rec in replace.items():
        key = key.replace("__", ".")
        if rec is None:
            rows.pop(key, None)
        else:
            rows[key] = rec
    return list(rows.values())


#: two F32 tensors: token_embd [32, 4] (512 bytes) at 0, blk.0.attn_q [32, 32] at 512
BASE_INFOS = [
    tinfo("token_embd.weight", (32, 4), T_F32, 0),
    tinfo("blk.0.attn_q.weight", (32, 32), T_F32, 512),
]
BASE_DATA = np.arange(32 * 4 + 32 * 32, dtype="<f4").tobytes()


def write(tmp: Path, name: str, blob: bytes) -> Path:
    p = tmp / name
    p.write_bytes(blob)
    return p


def refused(path: Path, *names: str, error: type[Exception] = ModelFileError) -> str:
    """Opening ``path`` raises exactly ``error``, naming the file and each of ``names``."""
    opener = read_imatrix if error is ImatrixError else open_model
    t0 = time.monotonic()
    with pytest.raises(error) as ei:
        opener(path)
    assert time.monotonic() - t0 < 2.0
    assert type(ei.value) is error
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


def test_base_file_opens(tmp_path: Path) -> None:
    m = open_model(write(tmp_path, "ok.gguf", gguf(base_kvs(), BASE_INFOS, BASE_DATA)))
    assert (m.architecture, m.n_layer, m.n_embd, m.n_head, m.n_vocab) == ("llama", 1, 32, 4, 4)
    assert [t.name for t in m.tensors] == ["token_embd.weight", "blk.0.attn_q.weight"]


# --- counts and lengths ---------------------------------------------------------------------


def test_huge_string_array_length(tmp_path: Path) -> None:
    """A string-array item of length >= 2^63 (was ``OverflowError``)."""
    big = struct.pack("<Q", 1 << 63) + b"x"
    items = gstr("a") + big + gstr("c") + gstr("d")
    rec = kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 4) + items)
    p = write(
        tmp_path, "longstr.gguf", gguf(base_kvs(tokenizer__ggml__tokens=rec), BASE_INFOS, BASE_DATA)
    )
    refused(p, "tokenizer.ggml.tokens")


def test_huge_array_count(tmp_path: Path) -> None:
    rec = kv("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, 1 << 62) + gstr("a"))
    p = write(
        tmp_path, "count.gguf", gguf(base_kvs(tokenizer__ggml__tokens=rec), BASE_INFOS, BASE_DATA)
    )
    refused(p, "tokenizer.ggml.tokens")
    rec = kv("llama.rope.freqs", ARR, struct.pack("<IQ", F32, (1 << 64) - 1))
    p = write(
        tmp_path, "count2.gguf", gguf(base_kvs(llama__rope__freqs=rec), BASE_INFOS, BASE_DATA)
    )
    refused(p, "llama.rope.freqs")


def test_nested_and_unknown_value_types(tmp_path: Path) -> None:
    nested = kv("x.nested", ARR, struct.pack("<IQ", ARR, 1) + struct.pack("<IQ", U8, 0))
    p = write(tmp_path, "nested.gguf", gguf(base_kvs(x__nested=nested), BASE_INFOS, BASE_DATA))
    refused(p, "x.nested", "array of arrays")
    p = write(
        tmp_path, "vt.gguf", gguf(base_kvs(x__y=kv("x.y", 13, b"\0" * 8)), BASE_INFOS, BASE_DATA)
    )
    refused(p, "x.y", "value type 13")


def test_tensor_count_zero(tmp_path: Path) -> None:
    """An F16 GGUF with tensor count 0 used to "quantize" into an empty file."""
    p = write(tmp_path, "empty.gguf", gguf(base_kvs(), BASE_INFOS, BASE_DATA, n_tensors=0))
    refused(p, "no tensors")


def test_duplicate_keys(tmp_path: Path) -> None:
    kvs = [*base_kvs(), kv("llama.block_count", U32, 1)]
    refused(
        write(tmp_path, "dupkey.gguf", gguf(kvs, BASE_INFOS, BASE_DATA)),
        "duplicate key",
        "'llama.block_count'",
    )


def test_duplicate_tensor_names(tmp_path: Path) -> None:
    infos = [BASE_INFOS[0], tinfo("token_embd.weight", (32, 32), T_F32, 512)]
    p = write(tmp_path, "duptensor.gguf", gguf(base_kvs(), infos, BASE_DATA))
    refused(p, "duplicate tensor name", "'token_embd.weight'")


# --- key types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rec", "words"),
    [
        (kv("general.alignment", F32, math.nan), ("general.alignment", "uint32")),
        (kv("general.alignment", U64, 32), ("general.alignment", "uint32")),
        (kv("general.alignment", STR, "32"), ("general.alignment", "uint32")),
        (kv("general.alignment", U32, 48), ("general.alignment", "power of 2")),
        (kv("general.alignment", U32, 0), ("general.alignment", "power of 2")),
        (kv("general.file_type", STR, "F16"), ("general.file_type", "unsigned integer")),
        (kv("general.file_type", F32, math.inf), ("general.file_type", "unsigned integer")),
        (kv("general.file_type", I32, -1), ("general.file_type", "unsigned integer")),
        (kv("general.file_type", BOOL, True), ("general.file_type", "unsigned integer")),
        (kv("llama.block_count", F32, math.nan), ("llama.block_count", "unsigned integer")),
        (kv("llama.block_count", STR, "12"), ("llama.block_count", "unsigned integer")),
        (kv("llama.embedding_length", F64, 32.0), ("llama.embedding_length",)),
        (kv("llama.embedding_length", U64, 1 << 40), ("llama.embedding_length",)),
        (arr("llama.block_count", U32, [1]), ("llama.block_count", "unsigned integer")),
        (arr("llama.attention.head_count", I32, [4, -4]), ("llama.attention.head_count", "array")),
        (arr("llama.attention.head_count", F32, [4.0]), ("llama.attention.head_count", "array")),
        (kv("llama.attention.layer_norm_rms_epsilon", F32, math.nan), ("layer_norm_rms_epsilon", "finite")),
        (kv("llama.rope.freq_base", F64, math.inf), ("llama.rope.freq_base", "finite")),
        (arr("llama.rope.scaling.factors", F32, [1.0, math.nan]), ("llama.rope.scaling.factors",)),
        (kv("general.architecture", U32, 7), ("general.architecture", "string")),
        (kv("general.name", ARR, struct.pack("<IQ", U8, 0)), ("general.name", "string")),
    ],
    ids=lambda x: "-".join(x) if isinstance(x, tuple) else "",
)  # fmt: skip
def test_wrong_typed_keys(tmp_path: Path, rec: bytes, words: tuple[str, ...]) -> None:
    key = rec[8 : 8 + struct.unpack_from("<Q", rec)[0]].decode()
    p = write(
        tmp_path,
        "keys.gguf",
        gguf(base_kvs(**{key.replace(".", "__"): rec}), BASE_INFOS, BASE_DATA),
    )
    refused(p, *words)


def test_per_layer_arrays_and_other_alignments_accepted(tmp_path: Path) -> None:
    kvs = base_kvs(
        llama__attention__head_count=arr("llama.attention.head_count", I32, [4]),
        general__alignment=kv("general.alignment", U32, 64),
    )
    m = open_model(write(tmp_path, "ok64.gguf", gguf(kvs, BASE_INFOS, BASE_DATA, align=64)))
    assert m.n_head == 4


@pytest.mark.parametrize("where", ["tokens", "datasets"])
def test_invalid_utf8(tmp_path: Path, golden_imatrix: Path, where: str) -> None:
    if where == "tokens":
        rec = arr("tokenizer.ggml.tokens", STR, [b"a", b"\xff\xfe", b"c", b"d"])
        p = write(
            tmp_path,
            "utf8.gguf",
            gguf(base_kvs(tokenizer__ggml__tokens=rec), BASE_INFOS, BASE_DATA),
        )
        refused(p, "invalid UTF-8", "tokenizer.ggml.tokens[1]")
        return
    blob = bytearray(golden_imatrix.read_bytes())
    h = read_header(golden_imatrix, keep_strings=("imatrix.datasets",))
    ds = h.metadata["imatrix.datasets"][0].encode()
    at = blob.index(ds, h.kv_spans["imatrix.datasets"][0])
    blob[at] = 0xC3  # a lead byte followed by ASCII
    refused(
        write(tmp_path, "utf8.imatrix.gguf", bytes(blob)),
        "invalid UTF-8",
        "imatrix.datasets",
        error=ImatrixError,
    )


# --- tensor infos ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("infos", "words"),
    [
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (32, 32), T_F32, 256)], ("overlap", "token_embd.weight", "blk.0.attn_q.weight")),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (32, 32), T_F32, 520)], ("blk.0.attn_q.weight", "alignment")),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (33, 32), T_Q4_1, 512)], ("blk.0.attn_q.weight", "Q4_1", "ne0 = 33")),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (32, 0), T_F32, 512)], ("blk.0.attn_q.weight", "dim")),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (32, 2, 2, 2, 2), T_F32, 512)], ("blk.0.attn_q.weight", "5 dims")),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (), T_F32, 512)], ("blk.0.attn_q.weight", "0 dims")),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (32, 33), T_F32, 512)], ("blk.0.attn_q.weight", "truncated")),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (32, 1 << 62), T_F32, 512)], ("blk.0.attn_q.weight",)),
        ([BASE_INFOS[0], tinfo("blk.0.attn_q.weight", (32, 32), 77, 512)], ("blk.0.attn_q.weight", "unknown tensor type")),
        ([BASE_INFOS[0], tinfo("x" * 64, (32, 32), T_F32, 512)], ("longer than 63",)),
    ],
    ids=lambda x: "-".join(x) if isinstance(x, tuple) else "",
)  # fmt: skip
def test_bad_tensor_infos(tmp_path: Path, infos: list[bytes], words: tuple[str, ...]) -> None:
    refused(write(tmp_path, "tensors.gguf", gguf(base_kvs(), infos, BASE_DATA)), *words)


def test_truncation_anywhere_is_one_error(tmp_path: Path) -> None:
    blob = gguf(base_kvs(), BASE_INFOS, BASE_DATA)
    for cut in range(4, len(blob) - len(BASE_DATA), 7):
        refused(write(tmp_path, "cut.gguf", blob[:cut]))


# --- imatrix GGUF ---------------------------------------------------------------------------


def _patched(src: Path, tmp: Path, name: str, tensor: str, index: int, value: float) -> Path:
    h = read_header(src)
    t = h.tensor(tensor)
    assert t is not None
    blob = bytearray(src.read_bytes())
    struct.pack_into("<f", blob, t.data_offset + 4 * index, value)
    return write(tmp, name, bytes(blob))


def test_byte_44_flip_does_not_hang(tmp_path: Path, golden_imatrix: Path) -> None:
    """Byte 44 08 -> 09 turns a string KV into an array with a huge count: gguf-py looped
    forever growing ~25 MB/s; lwq's reader refuses it at once."""
    blob = bytearray(golden_imatrix.read_bytes())
    assert blob[44] == 0x08
    blob[44] = 0x09
    p = write(tmp_path, "flip44.imatrix.gguf", bytes(blob))
    refused(p, error=ImatrixError)
    from lwq_app.core.importance.statistics import StatisticsRequest, imatrix_statistics

    with pytest.raises(ImatrixError, match="flip44"):
        imatrix_statistics(StatisticsRequest(p))


@pytest.mark.parametrize(
    ("suffix", "value", "words"),
    [
        (".in_sum2", -1.0, ("negative", "sums")),
        (".in_sum2", math.nan, ("non-finite", "sums")),
        (".in_sum2", math.inf, ("non-finite", "sums")),
        (".counts", math.nan, ("non-finite", "counts")),
        (".counts", math.inf, ("non-finite", "counts")),
        (".counts", -3.0, ("negative", "counts")),
        (".in_sum2", 3.4e38, ("implausibly large", "sums")),
    ],
)
def test_bad_imatrix_values(
    tmp_path: Path, golden_imatrix: Path, suffix: str, value: float, words: tuple[str, ...]
) -> None:
    """A negative value plus IQ2_XXS aborted llama.cpp (GGML_ASSERT(grid_index >= 0)); NaN/inf
    counts gave a traceback in ``lwq stats``. Both are refused at read time, naming the tensor."""
    name = "blk.3.ffn_down.weight"
    p = _patched(
        golden_imatrix,
        tmp_path,
        "vals.imatrix.gguf",
        name + suffix,
        5 if suffix == ".in_sum2" else 0,
        value,
    )
    refused(p, name, *words, error=ImatrixError)
    from lwq_app.core.importance.statistics import StatisticsRequest, imatrix_statistics

    with pytest.raises(ImatrixError, match=name):
        imatrix_statistics(StatisticsRequest(p))


def _imatrix(
    kvs: list[bytes], infos: list[bytes] | None = None, data: bytes | None = None
) -> bytes:
    infos = infos or [
        tinfo("blk.0.attn_q.weight.counts", (1, 1), T_F32, 0),
        tinfo("blk.0.attn_q.weight.in_sum2", (32, 1), T_F32, 32),
    ]
    data = data or struct.pack("<f", 10.0) + b"\0" * 28 + np.ones(32, "<f4").tobytes()
    return gguf(kvs, infos, data)


def _im_kvs(**replace: bytes) -> list[bytes]:
    rows = {
        "general.type": kv("general.type", STR, "imatrix"),
        "imatrix.datasets": arr("imatrix.datasets", STR, ["wiki.txt"]),
        "imatrix.chunk_count": kv("imatrix.chunk_count", U32, 10),
        "imatrix.chunk_size": kv("imatrix.chunk_size", U32, 512),
    }
    rows |= {k.replace("__", "."): v for k, v in replace.items()}
    return list(rows.values())


def test_small_imatrix_reads(tmp_path: Path) -> None:
    im = read_imatrix(write(tmp_path, "ok.imatrix.gguf", _imatrix(_im_kvs())))
    assert im.datasets == ("wiki.txt",) and (im.chunk_count, im.chunk_size) == (10, 512)
    assert np.allclose(im.weights()["blk.0.attn_q.weight"], 0.1)


@pytest.mark.parametrize(
    ("rec", "words"),
    [
        (arr("imatrix.datasets", U32, [1, 2]), ("imatrix.datasets", "array of strings")),
        (kv("imatrix.datasets", U32, 1), ("imatrix.datasets", "array of strings")),
        (kv("imatrix.chunk_count", I32, 10), ("imatrix.chunk_count", "uint32")),
        (kv("imatrix.chunk_size", F32, math.nan), ("imatrix.chunk_size", "uint32")),
        (kv("imatrix.chunk_size", STR, "512"), ("imatrix.chunk_size", "uint32")),
        (kv("general.type", U32, 1), ("general.type", "string")),
    ],
    ids=lambda x: "-".join(x) if isinstance(x, tuple) else "",
)  # fmt: skip
def test_bad_imatrix_metadata(tmp_path: Path, rec: bytes, words: tuple[str, ...]) -> None:
    key = rec[8 : 8 + struct.unpack_from("<Q", rec)[0]].decode()
    p = write(tmp_path, "meta.imatrix.gguf", _imatrix(_im_kvs(**{key.replace(".", "__"): rec})))
    refused(p, *words, error=ImatrixError)


@pytest.mark.parametrize(
    ("infos", "words"),
    [
        ([tinfo("blk.0.attn_q.weight.in_sum2", (32, 1), T_F32, 32)], ("mismatched", "blk.0.attn_q.weight")),
        ([tinfo("blk.0.attn_q.weight.counts", (1, 2), T_F32, 0), tinfo("blk.0.attn_q.weight.in_sum2", (32, 1), T_F32, 32)], ("2 counts for 1 matrices",)),
        ([tinfo("blk.0.attn_q.weight.counts", (1, 1), T_F16, 0), tinfo("blk.0.attn_q.weight.in_sum2", (32, 1), T_F32, 32)], ("blk.0.attn_q.weight.counts", "F32")),
        ([tinfo("blk.0.attn_q.weight.counts", (1, 1), T_F32, 0), tinfo("blk.0.attn_q.weight.in_sum2", (16, 1, 2), T_F32, 32)], ("blk.0.attn_q.weight.in_sum2", "3 dims")),
        ([tinfo("blk.0.attn_q.weight.counts", (1, 1), T_F32, 0), tinfo("blk.0.attn_q.weight.counts", (32, 1), T_F32, 32)], ("duplicate tensor name",)),
    ],
    ids=lambda x: "-".join(x) if isinstance(x, tuple) else "",
)  # fmt: skip
def test_bad_imatrix_structure(tmp_path: Path, infos: list[bytes], words: tuple[str, ...]) -> None:
    refused(
        write(tmp_path, "struct.imatrix.gguf", _imatrix(_im_kvs(), infos)),
        *words,
        error=ImatrixError,
    )


# --- legacy .dat ----------------------------------------------------------------------------


def test_truncated_dat(tmp_path: Path, golden_imatrix: Path) -> None:
    """A .dat cut inside its values raised from ``np.frombuffer`` before the length check."""
    good = tmp_path / "good.dat"
    write_imatrix(read_imatrix(golden_imatrix), good)
    blob = good.read_bytes()
    (ln,) = struct.unpack_from("<i", blob, 4)
    first_values = 4 + 4 + ln + 8
    for cut in (first_values + 10, len(blob) // 2, first_values - 3, 6):
        p = write(tmp_path, "cut.dat", blob[:cut])
        refused(p, "truncated", error=ImatrixError)


def test_bad_dat_values(tmp_path: Path, golden_imatrix: Path) -> None:
    good = tmp_path / "good.dat"
    write_imatrix(read_imatrix(golden_imatrix), good)
    blob = bytearray(good.read_bytes())
    (ln,) = struct.unpack_from("<i", blob, 4)
    name = bytes(blob[8 : 8 + ln]).decode()
    struct.pack_into("<f", blob, 8 + ln + 8 + 4, -2.0)
    refused(write(tmp_path, "neg.dat", bytes(blob)), name, "negative", error=ImatrixError)
    struct.pack_into("<f", blob, 8 + ln + 8 + 4, math.nan)
    refused(write(tmp_path, "nan.dat", bytes(blob)), name, "non-finite", error=ImatrixError)
    struct.pack_into("<f", blob, 8 + ln + 8 + 4, 3.4e38)
    refused(write(tmp_path, "big.dat", bytes(blob)), name, "implausibly large", error=ImatrixError)
    blob[8] = 0xFF
    refused(write(tmp_path, "name.dat", bytes(blob)), "invalid UTF-8", error=ImatrixError)


# --- upcast: empty arrays copied, duplicate keys refused --------------------------------------


def test_upcast_empty_arrays_and_duplicate_keys(tmp_path: Path) -> None:
    from lwq_app.core.modelfile.upcast import UpcastRequest, upcast

    kvs = [*base_kvs(), arr("x.empty_u32", U32, []), arr("x.empty_str", STR, [])]
    infos = [
        tinfo("token_embd.weight", (32, 4), T_F16, 0),
        tinfo("blk.0.attn_q.weight", (32, 32), T_F16, 256),
    ]
    data = np.arange(32 * 4 + 32 * 32, dtype="<f2").tobytes()
    src = write(tmp_path, "src.gguf", gguf(kvs, infos, data))
    out = tmp_path / "out.gguf"
    upcast(UpcastRequest(src, out, "F32"))
    a, b = read_header(src), read_header(out)
    assert b.metadata["x.empty_u32"] == [] and b.metadata["x.empty_str"].count == 0
    assert {k: v for k, v in b.metadata.items() if k != "general.file_type"} == {
        k: v for k, v in a.metadata.items() if k != "general.file_type"
    }
    assert np.array_equal(
        np.asarray(b.tensor_array(b.tensors[1])),
        np.asarray(a.tensor_array(a.tensors[1]), np.float32),
    )

    dup = write(tmp_path, "dup.gguf", gguf([*kvs, arr("x.empty_u32", U32, [])], infos, data))
    with pytest.raises(ModelFileError, match=r"dup\.gguf: .*duplicate key 'x\.empty_u32'"):
        upcast(UpcastRequest(dup, tmp_path / "out2.gguf", "F32"))
    assert not (tmp_path / "out2.gguf").exists()
