"""Every minimal reproducer the fuzz suite (or issue #9) found, as a committed test.

Each row: a tiny byte patch of a seed file (the fuzz suite's tiny model / imatrix / .dat,
or the golden SmolLM2 imatrix), a plan text or an argument string, and the project error
class it must end in — within the per-case time bound, with a one-line message naming the
file or option. Rows marked ``must_fail`` were accepted garbage (a result was returned).
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import harness
import mutators as mu
import pytest

S = harness._seeds


def _lay(kind: str) -> mu.GGUFLayout:
    return S()[
        {"model": "model_layout", "imatrix": "imatrix_layout", "golden": "golden_layout"}[kind]
    ]


def _field(lay: mu.GGUFLayout, kind: str, owner: str = "") -> mu.Field:
    return next(f for f in lay.fields if f.kind == kind and (not owner or f.owner == owner))


def _patch(kind: str, *ops: mu.Op) -> bytes:
    lay = _lay(kind)
    return mu.apply_ops(lay.buf, list(ops), lay)


def setint(kind: str, fkind: str, value: int, owner: str = "") -> Callable[[], bytes]:
    return lambda: _patch(kind, mu._set_int(_field(_lay(kind), fkind, owner), value))


def value(kind: str, key: str, name: str) -> Callable[[], bytes]:
    def make() -> bytes:
        lay = _lay(kind)
        choice = next(c for c in mu._ODD_VALUES if c[0] == name)
        return _patch(kind, mu._replace_value(lay, lay.kv(key), choice))

    return make


def raw_value(kind: str, key: str, data: bytes) -> Callable[[], bytes]:
    def make() -> bytes:
        kv = _lay(kind).kv(key)
        return _patch(kind, mu.Op(kv.value_off, kv.end - kv.value_off, data, "", header=True))

    return make


def tensor(kind: str, name: str, what: str, v: int) -> Callable[[], bytes]:
    def make() -> bytes:
        t = next(t for t in _lay(kind).tensors if t.name == name)
        at = {"dim0": (t.dims_off, "Q"), "type": (t.ttype_off, "I"), "offset": (t.toff_off, "Q")}
        off, fmt = at[what]
        return _patch(kind, mu.Op(off, struct.calcsize(fmt), mu._int_bytes(fmt, v), ""))

    return make


def tensor_ops(kind: str, name: str, changes: dict[str, int]) -> Callable[[], bytes]:
    def make() -> bytes:
        t = next(t for t in _lay(kind).tensors if t.name == name)
        ops = []
        for what, v in changes.items():
            off, fmt = {
                "dim0": (t.dims_off, "Q"),
                "type": (t.ttype_off, "I"),
                "offset": (t.toff_off, "Q"),
            }[what]
            ops.append(mu.Op(off, struct.calcsize(fmt), mu._int_bytes(fmt, v), ""))
        return _patch(kind, *ops)

    return make


def dup_key(kind: str, key: str) -> Callable[[], bytes]:
    def make() -> bytes:
        lay = _lay(kind)
        kv = lay.kv(key)
        n_kv = _field(lay, "n_kv")
        return _patch(
            kind,
            mu.Op(lay.kvs[-1].end, 0, lay.buf[kv.start : kv.end], "", header=True),
            mu._set_int(n_kv, n_kv.value + 1),
        )

    return make


def rename(kind: str, name: str, to: str) -> Callable[[], bytes]:
    def make() -> bytes:
        lay = _lay(kind)
        f = _field(lay, "name", name)
        return _patch(
            kind, mu.Op(f.off - 8, 8 + f.size, mu._gguf_string(to.encode()), "", header=True)
        )

    return make


def token_bytes(i: int, data: bytes) -> Callable[[], bytes]:
    def make() -> bytes:
        lay = _lay("model")
        strs = [f for f in lay.fields if f.kind == "str" and f.owner == "tokenizer.ggml.tokens"]
        f = strs[i]
        return _patch("model", mu.Op(f.off - 8, 8 + f.size, mu._gguf_string(data), "", header=True))

    return make


def imatrix_value(name: str, i: int, v: float, kind: str = "imatrix") -> Callable[[], bytes]:
    def make() -> bytes:
        lay = _lay(kind)
        t = next(t for t in lay.tensors if t.name == name)
        return _patch(kind, mu.Op(lay.data_start + t.offset + 4 * i, 4, struct.pack("<f", v), ""))

    return make


def flip(kind: str, at: int, to: int) -> Callable[[], bytes]:
    return lambda: _patch(kind, mu.Op(at, 1, bytes([to]), ""))


def dat(patch: Callable[[mu.DatLayout], list[mu.Op]]) -> Callable[[], bytes]:
    return lambda: mu.apply_ops(S()["dat_layout"].buf, patch(S()["dat_layout"]))


def _with_key(key: bytes, value_bytes: bytes) -> bytes:
    lay = _lay(M)
    return mu.apply_ops(lay.buf, mu._insert_kv(lay, key, value_bytes, ""), lay)


def plan_edit(edit: Callable[[dict], object]) -> Callable[[], str]:
    def make() -> str:
        d = json.loads(S()["plan_text"])
        edit(d)
        return json.dumps(d)

    return make


def plan_text(fn: Callable[[str], str]) -> Callable[[], str]:
    return lambda: fn(S()["plan_text"])


@dataclass(frozen=True)
class Row:
    id: str
    fmt: str  # harness format: the target the payload goes to
    make: Callable[[], object]
    expect: tuple[str, ...]  # project error class names (the exact class or a parent)
    must_fail: bool = False
    xfail: str = ""  # not yet fixed at the time of writing: why
    ok_allowed: bool = False  # a valid result is fine too (the row guards against an escape)


M, I_, G = "model", "imatrix", "golden"
T0 = "blk.0.attn_q.weight"
IM0 = "blk.0.attn_q.weight.in_sum2"
IMC0 = "blk.0.attn_q.weight.counts"
MF, IE, PE, INP = ("ModelFileError",), ("ImatrixError",), ("PlanError",), ("InputError",)

ROWS = [
    # --- issue #9 examples -----------------------------------------------------------------
    Row("golden-imatrix-byte44-hang", "imatrix_golden", flip(G, 44, 0x09), IE),
    Row("imatrix-negative-value", "imatrix", imatrix_value(IM0, 3, -1.0), IE, must_fail=True),
    Row("imatrix-nan-value", "imatrix", imatrix_value(IM0, 0, math.nan), IE, must_fail=True),
    Row("imatrix-nan-count", "imatrix", imatrix_value(IMC0, 0, math.nan), IE, must_fail=True),
    Row("imatrix-inf-count", "imatrix", imatrix_value(IMC0, 0, math.inf), IE, must_fail=True),
    Row("model-zero-tensors", "model", setint(M, "n_tensors", 0), MF, must_fail=True),
    Row("model-duplicate-tensor-name", "model", rename(M, T0, "blk.0.attn_k.weight"), MF, True),
    Row("model-duplicate-key", "model", dup_key(M, "llama.block_count"), MF, must_fail=True),
    Row("model-overlapping-tensors", "model", tensor(M, T0, "offset", 0), MF, must_fail=True),
    Row(
        "model-misaligned-offset",
        "model",
        tensor(M, "output_norm.weight", "offset", 16 * 1024 + 4),
        MF,
        True,
    ),
    Row(
        "model-q4_1-ne0-33", "model", tensor_ops(M, T0, {"type": 3, "dim0": 33}), MF, must_fail=True
    ),
    Row("model-dim-zero", "model", tensor(M, T0, "dim0", 0), MF, must_fail=True),
    Row(
        "model-string-array-2^63",
        "model",
        setint(M, "arr_count", 2**63, "tokenizer.ggml.tokens"),
        MF,
    ),
    Row(
        "model-string-array-2^64-1",
        "model",
        setint(M, "arr_count", 2**64 - 1, "tokenizer.ggml.tokens"),
        MF,
    ),
    Row("model-key-len-2^63", "model", setint(M, "key_len", 2**63), MF),
    Row("model-n-kv-2^64-1", "model", setint(M, "n_kv", 2**64 - 1), MF),
    Row(
        "model-alignment-string",
        "model",
        lambda: _with_key(b"general.alignment", mu._kv_value(8, b"x")),
        MF,
    ),
    Row(
        "model-alignment-f32-nan",
        "model",
        lambda: _with_key(b"general.alignment", mu._kv_value(6, math.nan)),
        MF,
    ),
    Row(
        "model-alignment-zero",
        "model",
        lambda: _with_key(b"general.alignment", mu._kv_value(4, 0)),
        MF,
    ),
    Row(
        "model-alignment-3",
        "model",
        lambda: _with_key(b"general.alignment", mu._kv_value(4, 3)),
        MF,
    ),
    Row("model-block-count-f32-nan", "model", value(M, "llama.block_count", "f32 NaN"), MF),
    Row("model-block-count-f64-inf", "model", value(M, "llama.block_count", "f64 -inf"), MF),
    Row(
        "model-head-count-string", "model", value(M, "llama.attention.head_count", "string 'x'"), MF
    ),
    Row("model-file-type-string", "model", value(M, "general.file_type", "string 'x'"), MF),
    Row("model-file-type-f32-inf", "model", value(M, "general.file_type", "f32 inf"), MF),
    Row(
        "model-architecture-bad-utf8",
        "model",
        value(M, "general.architecture", "string bad utf-8"),
        MF,
    ),
    Row("model-token-bad-utf8", "model", token_bytes(3, b"\xff\xfe"), MF),
    Row("model-tensor-type-invalid", "model", tensor(M, T0, "type", 2**31), MF),
    Row("model-tensor-offset-2^63", "model", tensor(M, T0, "offset", 2**63), MF),
    Row("model-truncated-header", "model", lambda: _lay(M).buf[: _lay(M).header_end - 3], MF),
    Row("model-version-4", "model", setint(M, "version", 4), MF),
    # --- found by the fuzz suite ----------------------------------------------------------------
    Row(
        "imatrix-huge-value-stats-overflow",  # imatrix 9 1: in_sum2[25] = 3.4e38
        "imatrix",
        imatrix_value("blk.0.attn_k.weight.in_sum2", 25, 3.4e38),
        IE,
        ok_allowed=True,
    ),
    Row(
        "dat-huge-value-stats-overflow",  # dat 9 45: values[blk.1.attn_k.weight][42] = 3.4e38
        "dat",
        dat(lambda d: [mu.Op(d.values[0].off + 4 * 42, 4, struct.pack("<f", 3.4e38), "")]),
        IE,
        ok_allowed=True,
    ),
    Row(
        "model-expert-tensor-without-layer",  # model 9 172: byte 2012 6b -> 63 (blk -> blc)
        "model",
        rename(M, "blk.0.ffn_up_exps.weight", "blc.0.ffn_up_exps.weight"),
        INP,
    ),
    Row(
        "imatrix-datasets-bad-utf8",
        "imatrix",
        raw_value(I_, "imatrix.datasets", mu._kv_value(9, [b"\xc0\x80"], 8)),
        IE,
    ),
    Row(
        "imatrix-datasets-not-strings",
        "imatrix",
        raw_value(I_, "imatrix.datasets", mu._kv_value(9, [1, 2], 4)),
        IE,
    ),
    Row(
        "imatrix-datasets-array-2^63",
        "imatrix",
        setint(I_, "arr_count", 2**63, "imatrix.datasets"),
        IE,
    ),
    Row(
        "imatrix-chunk-count-f32-nan",
        "imatrix",
        raw_value(I_, "imatrix.chunk_count", mu._kv_value(6, math.nan)),
        IE,
    ),
    Row("imatrix-tensor-not-f32", "imatrix", tensor(I_, IM0, "type", 1), IE),
    Row(
        "imatrix-duplicate-tensor",
        "imatrix",
        rename(I_, IM0, "blk.0.attn_k.weight.in_sum2"),
        IE,
        True,
    ),
    Row("imatrix-string-len-huge", "imatrix", setint(I_, "str_len", 2**63, "imatrix.datasets"), IE),
    Row(
        "dat-truncated-in-values",
        "dat",
        dat(lambda d: [mu.Op(d.values[0].off + 10, 0, b"", "", truncate=True)]),
        IE,
    ),
    Row(
        "dat-truncated-after-name",
        "dat",
        dat(lambda d: [mu.Op(d.names[0].off + d.names[0].size + 2, 0, b"", "", truncate=True)]),
        IE,
    ),
    Row(
        "dat-nval-huge",
        "dat",
        dat(
            lambda d: [
                mu.Op(
                    next(f for f in d.ints if f.kind == "nval").off,
                    4,
                    struct.pack("<i", 2**31 - 1),
                    "",
                )
            ]
        ),
        IE,
    ),
    Row("dat-name-bad-utf8", "dat", dat(lambda d: [mu.Op(d.names[0].off, 2, b"\xff\xfe", "")]), IE),
    Row(
        "dat-nan-value",
        "dat",
        dat(lambda d: [mu.Op(d.values[0].off, 4, struct.pack("<f", math.nan), "")]),
        IE,
        must_fail=True,
    ),
    Row(
        "dat-dataset-len-huge",
        "dat",
        dat(
            lambda d: [
                mu.Op(
                    next(f for f in d.ints if f.kind == "ds_len").off,
                    4,
                    struct.pack("<i", 2**31 - 1),
                    "",
                )
            ]
        ),
        IE,
    ),
    Row("plan-nested-1000", "plan", lambda: "[" * 1000 + "]" * 1000, PE),
    Row(
        "plan-nested-100000-in-note",
        "plan",
        plan_text(lambda t: t.replace('"note": ""', '"note": ' + "[" * 100000 + "]" * 100000)),
        PE,
    ),
    Row(
        "plan-5000-digit-int",
        "plan",
        plan_text(lambda t: t.replace('"version": 1', '"version": ' + "9" * 5000)),
        PE,
    ),
    Row(
        "plan-version-nan",
        "plan",
        plan_text(lambda t: t.replace('"version": 1', '"version": NaN')),
        PE,
    ),
    Row(
        "plan-tensor-unknown-type",
        "plan",
        plan_edit(lambda d: d["tensors"].__setitem__(T0, "Q9_Z")),
        PE,
    ),
    Row("plan-tensor-type-int", "plan", plan_edit(lambda d: d["tensors"].__setitem__(T0, 4)), PE),
    Row(
        "plan-unknown-tensor",
        "plan",
        plan_edit(lambda d: d["tensors"].__setitem__("foo.weight", "Q4_K")),
        PE,
    ),
    Row(
        "plan-tensor-name-newline",
        "plan",
        plan_edit(lambda d: d["tensors"].__setitem__("a\nb", "Q4_K")),
        PE,
    ),
    Row(
        "plan-norm-quantized",
        "plan",
        plan_edit(lambda d: d["tensors"].__setitem__("output_norm.weight", "Q4_K")),
        PE,
    ),
    Row("plan-missing-tensors", "plan", plan_edit(lambda d: d.pop("tensors")), PE),
    Row(
        "plan-not-utf8",
        "plan",
        lambda: S()["plan_text"].encode()[:20] + b"\xff" + S()["plan_text"].encode()[20:],
        PE,
    ),
    Row("plan-truncated", "plan", plan_text(lambda t: t[: len(t) // 2]), PE),
    Row("plan-model-not-object", "plan", plan_edit(lambda d: d.__setitem__("model", [])), PE),
    Row("size-310-digits", "size", lambda: "1" * 310 + "GB", INP),
    Row("size-5000-digits", "size", lambda: "9" * 5000 + "B", INP),
    Row("size-negative", "size", lambda: "-1GB", INP),
    Row("size-nan", "size", lambda: "nanGB", INP),
    Row("size-embedded-newline", "size", lambda: "3.9G\nB", INP),
    Row("size-zero", "size", lambda: "0GB", INP),
    Row("size-unicode-digits", "size", lambda: "١٢GB", INP),
    Row("bpw-inf", "bpw", lambda: "inf", INP),
    Row("bpw-nan", "bpw", lambda: "nan", INP),
    Row("bpw-negative", "bpw", lambda: "-1", INP),
    Row("bpw-1e400", "bpw", lambda: "1e400", INP),
]


def _run(row: Row) -> harness.Outcome:
    payload = row.make()
    case = harness.Case(row.fmt, 0, 0, row.id, payload, must_fail=row.must_fail)
    with tempfile.TemporaryDirectory(prefix="lwq-fuzz-reg-") as d:
        return harness.run_case(case, Path(d))


def _classes(name: str) -> set[str]:
    from lwq_app.core.jobs import errors

    cls = getattr(errors, name, None)
    return {c.__name__ for c in cls.__mro__} if cls else {name}


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(
            r, id=r.id, marks=[pytest.mark.xfail(strict=True, reason=r.xfail)] if r.xfail else []
        )
        for r in ROWS
    ],
)
def test_regression(row: Row) -> None:
    out = _run(row)
    if row.ok_allowed and out.kind == "ok":
        return
    assert out.kind == "error", f"{row.id}: {out}"
    assert any(e in _classes(out.exc_type) for e in row.expect), f"{row.id}: {out}"
    assert "\n" not in out.message, f"{row.id}: message is not one line: {out.message!r}"
    if row.fmt in ("model", "imatrix", "imatrix_golden", "dat", "plan"):
        assert "case" in out.message, f"{row.id}: message does not name the file: {out.message!r}"


def test_rows_unique() -> None:
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids))


# --- jobs beyond the readers (issue #9 examples) -------------------------------------------


def _write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


def test_upcast_into_missing_folder(tmp_path: Path) -> None:
    from lwq_app.core.jobs.errors import OutputError
    from lwq_app.core.modelfile.upcast import UpcastRequest, upcast

    with pytest.raises(OutputError) as e:
        upcast(UpcastRequest(S()["files"]["model"], tmp_path / "missing" / "out.gguf", "F32"))
    assert "missing" in str(e.value)


@pytest.mark.parametrize(
    ("make", "must_fail"),
    [
        (dup_key(M, "general.name"), True),
        (value(M, "llama.attention.head_count", "empty u32 array"), False),
        (token_bytes(2, b"\xc0\x80"), True),
    ],
    ids=["duplicate-key", "empty-array", "token-bad-utf8"],
)
def test_upcast_damaged_model(tmp_path: Path, make: Callable[[], bytes], must_fail: bool) -> None:
    """Upcast used to pass these to gguf-py raw (tracebacks); now: ModelFileError and no
    file, or (an empty per-layer array is legal GGUF) a complete copy."""
    from lwq_app.core.jobs.errors import ModelFileError
    from lwq_app.core.modelfile.upcast import UpcastRequest, upcast

    src = _write(tmp_path, "src.gguf", make())
    try:
        upcast(UpcastRequest(src, tmp_path / "out.gguf", "F32"))
    except ModelFileError as e:
        assert "\n" not in str(e) and "src.gguf" in str(e)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["src.gguf"]
    else:
        assert not must_fail, "damaged model upcast without an error"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf", "src.gguf"]


def test_recipe_unknown_base_ftype() -> None:
    from lwq_app.core.jobs.errors import InputError
    from lwq_app.core.plan.quant_plan import plan_from_preset
    from lwq_app.core.plan.recipe import make_recipe

    plan = plan_from_preset(S()["model_info"], "Q4_K_M")
    with pytest.raises(InputError) as e:
        make_recipe(plan, "BOGUS")
    assert "BOGUS" in str(e.value)


def test_quantize_unknown_base_ftype(tmp_path: Path) -> None:
    from lwq_app.core.jobs.errors import InputError
    from lwq_app.core.plan.quant_plan import plan_from_preset
    from lwq_app.core.plan.quantize import QuantizeRequest, quantize

    plan = plan_from_preset(S()["model_info"], "Q4_K_M")
    req = QuantizeRequest(S()["files"]["model"], plan, tmp_path / "q.gguf", base_ftype="BOGUS")
    with pytest.raises(InputError) as e:
        quantize(req)
    assert "BOGUS" in str(e.value)
    assert not list(tmp_path.iterdir())
