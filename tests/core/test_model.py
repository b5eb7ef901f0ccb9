from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import fixtures
from lwq_app.core.jobs.errors import ModelFileError
from lwq_app.core.modelfile.inventory import allows_quantization, open_model


def test_smollm2_inventory(smollm2: Path) -> None:
    m = open_model(smollm2)
    assert (m.architecture, m.n_layer, m.n_embd, m.n_head, m.n_head_kv) == ("llama", 30, 576, 9, 3)
    assert m.n_gqa == 3 and m.n_expert == 0 and m.tied_embeddings
    assert m.n_vocab == 49152
    assert len(m.tensors) == 272
    q = m.tensor("blk.3.attn_q.weight")
    assert (q.layer, q.kind, q.shape, q.type, q.quantizable) == (
        3,
        "attn_q",
        (576, 576),
        "F16",
        True,
    )
    norm = m.tensor("blk.3.ffn_norm.weight")
    assert norm.quantizable is False and norm.type == "F32"
    assert m.tensor("token_embd.weight").quantizable
    assert sum(t.quantizable for t in m.tensors) == 211
    assert m.n_params == sum(t.n_params for t in m.tensors)
    assert 134_000_000 < m.n_params < 136_000_000
    # llama.cpp's walk order: non-layer tensors first, then layers numerically (2 before 10)
    order = [t.name for t in m.llama_order()]
    assert order[0] == "output_norm.weight" and order.index("blk.2.attn_k.weight") < order.index(
        "blk.10.attn_k.weight"
    )


def test_packaged_q4_1_inventory(smollm2_q4_1: Path) -> None:
    m = open_model(smollm2_q4_1)
    types = {t.type for t in m.tensors}
    assert types == {"Q4_1", "Q8_0", "F32"}


def test_synthetic_architectures(synthetic_model: Path) -> None:
    m = open_model(synthetic_model)
    if "moe8" in synthetic_model.name:
        assert m.n_expert == 8
        exps = m.tensor("blk.0.ffn_down_exps.weight")
        assert exps.n_experts == 8 and exps.quantizable
        assert not m.tensor("blk.0.ffn_gate_inp.weight").quantizable  # router stays float
    elif "phi3" in synthetic_model.name:
        assert m.architecture == "phi3" and m.tensor("blk.0.attn_qkv.weight").kind == "attn_qkv"
    else:
        assert m.n_gqa == 4 and not m.tied_embeddings


def test_never_quantized_names() -> None:
    assert not allows_quantization("blk.0.attn_norm.weight", 1)
    assert not allows_quantization("blk.0.ffn_gate_inp.weight", 2)
    assert not allows_quantization("blk.0.attn_q.bias", 2)
    assert allows_quantization("blk.0.ffn_down_exps.weight", 3)


def test_split_model_reads_as_one(tmp_path: Path) -> None:
    from gguf import GGUFWriter

    base = tmp_path / "tiny.gguf"
    w = GGUFWriter(base, arch="llama", split_max_tensors=3)
    w.add_block_count(2)
    for i in range(7):
        w.add_tensor(f"blk.{i % 2}.t{i}.weight", np.zeros((4, 32), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    shards = sorted(tmp_path.glob("tiny-*-of-*.gguf"))
    assert len(shards) == 3
    m = open_model(shards[1])
    assert len(m.paths) == 3 and len(m.tensors) == 7
    assert {t.file_index for t in m.tensors} == {0, 1, 2}
    shards[2].unlink()
    with pytest.raises(ModelFileError, match="missing shard"):
        open_model(shards[0])


def test_not_a_gguf(tmp_path: Path) -> None:
    p = tmp_path / "notes.gguf"
    p.write_text("hello, I am text")
    with pytest.raises(ModelFileError, match=r"notes\.gguf: not a GGUF file"):
        open_model(p)
    with pytest.raises(ModelFileError, match="no such file"):
        open_model(tmp_path / "absent.gguf")


def test_truncated_file(tmp_path: Path) -> None:
    src = fixtures.synthetic("gqa4-untied")
    p = tmp_path / "cut.gguf"
    data = src.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"cut\.gguf: .*truncated"):
        open_model(p)
    p.write_bytes(data[:200])  # cut inside the metadata
    with pytest.raises(ModelFileError, match=r"cut\.gguf: corrupted or truncated"):
        open_model(p)


def test_corrupted_header(tmp_path: Path) -> None:
    src = fixtures.synthetic("gqa4-untied")
    data = bytearray(src.read_bytes())
    data[16:24] = struct.pack("<Q", 2**60)  # absurd metadata count
    p = tmp_path / "bad.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"bad\.gguf"):
        open_model(p)


def test_unknown_tensor_type(tmp_path: Path) -> None:
    from gguf import GGUFReader

    src = fixtures.synthetic("gqa4-untied")
    r = GGUFReader(src)
    t = r.tensors[0]
    # the tensor-info record: name, n_dims, dims..., type (u32), offset (u64)
    type_part = t.field.parts[4]
    off = type_part.ctypes.data - r.data.ctypes.data
    data = bytearray(src.read_bytes())
    data[off : off + 4] = struct.pack("<I", 77)
    p = tmp_path / "weird.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"weird\.gguf: unknown tensor type"):
        open_model(p)


def test_fast_header_reader_agrees_with_gguf_py(
    smollm2: Path, smollm2_q4_1: Path, synthetic_model: Path
) -> None:
    """ggufread parses what gguf-py's GGUFReader parses: every key, value and tensor slot."""
    for path in (smollm2, smollm2_q4_1, synthetic_model):
        _same_as_gguf_py(path)


def _same_as_gguf_py(path: Path) -> None:
    from gguf import GGUFReader

    from lwq_app.core.modelfile.gguf_header import StringArray, read_header

    ref = GGUFReader(path, "r")
    h = read_header(path, keep_strings=("tokenizer.ggml.merges",))
    ref_keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(h.metadata) == ref_keys
    for key in ref_keys:
        got, want = h.metadata[key], ref.fields[key].contents()
        if isinstance(got, StringArray):
            assert got.count == len(want), key
        elif isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-7), key
        else:
            assert got == want, key
    assert [(t.name, t.shape, t.type_id, t.data_offset, t.n_bytes) for t in h.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), int(t.data_offset),
         int(t.n_bytes))
        for t in ref.tensors
    ]  # fmt: skip
    t = h.tensors[-1]
    assert np.array_equal(
        np.asarray(h.tensor_array(t)).reshape(-1).view(np.uint8),
        np.asarray(ref.tensors[-1].data).reshape(-1).view(np.uint8),
    )
