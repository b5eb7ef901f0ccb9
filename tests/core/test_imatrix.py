from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import fixtures
from lwq_app.core.jobs.errors import ImatrixError
from lwq_app.core.modelfile.imatrix_file import (
    Imatrix,
    ImatrixEntry,
    read_imatrix,
    write_dat,
    write_gguf,
)
from lwq_app.core.modelfile.inventory import open_model


def test_read_llama_imatrix_output(golden_imatrix: Path) -> None:
    im = read_imatrix(golden_imatrix)
    assert len(im.entries) == 210  # every quantizable tensor but token_embd (no --process-output)
    assert im.chunk_count == 16 and im.chunk_size == 512
    assert im.datasets == ("resources/calibration/lwq-calibration-v1.txt",)
    e = im.entries["blk.0.ffn_down.weight"]
    assert e.sums.shape == (1, 1536) and e.counts.tolist() == [16 * 512]
    w = e.weights()
    np.testing.assert_allclose(w, e.sums[0] / np.float32(8192), rtol=0)


def test_gguf_round_trip(golden_imatrix: Path, tmp_path: Path) -> None:
    im = read_imatrix(golden_imatrix)
    out = tmp_path / "copy.imatrix.gguf"
    write_gguf(im, out)
    back = read_imatrix(out)
    assert back.entries.keys() == im.entries.keys()
    for n, e in im.entries.items():
        np.testing.assert_array_equal(back.entries[n].sums, e.sums)
        np.testing.assert_array_equal(back.entries[n].counts, e.counts)
    assert (back.datasets, back.chunk_count, back.chunk_size) == (
        im.datasets,
        im.chunk_count,
        im.chunk_size,
    )
    from gguf import GGUFReader

    r = GGUFReader(out)
    assert r.get_field("general.type").contents() == "imatrix"
    assert r.get_field("general.architecture") is None  # as llama-imatrix writes it


def test_dat_round_trip_gives_same_weights(golden_imatrix: Path, tmp_path: Path) -> None:
    im = read_imatrix(golden_imatrix)
    out = tmp_path / "legacy.dat"
    write_dat(im, out)
    back = read_imatrix(out)
    assert back.is_legacy and back.chunk_count == 16
    for n, e in im.entries.items():
        np.testing.assert_allclose(back.entries[n].weights(), e.weights(), rtol=2e-7)


def test_moe_zero_count_expert_weighs_one(tmp_path: Path) -> None:
    sums = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    counts = np.array([2.0, 0.0, 4.0], np.float32)
    im = Imatrix(
        {"blk.0.ffn_down_exps.weight": ImatrixEntry("blk.0.ffn_down_exps.weight", sums, counts)},
        ("x",),
        1,
        512,
    )
    assert im.zero_count_experts() == {"blk.0.ffn_down_exps.weight": [1]}
    w = im.entries["blk.0.ffn_down_exps.weight"].weights().reshape(3, 4)
    np.testing.assert_array_equal(w[1], np.ones(4, np.float32))
    np.testing.assert_array_equal(w[0], sums[0] / 2)
    write_gguf(im, tmp_path / "moe.gguf")
    back = read_imatrix(tmp_path / "moe.gguf")
    np.testing.assert_array_equal(
        back.entries["blk.0.ffn_down_exps.weight"].weights(), w.reshape(-1)
    )
    write_dat(im, tmp_path / "moe.dat")  # legacy keeps the entry (partial data stored as 1)
    dat = read_imatrix(tmp_path / "moe.dat")
    np.testing.assert_allclose(dat.entries["blk.0.ffn_down_exps.weight"].weights(), w.reshape(-1))


def test_corrupt_and_foreign_imatrix(golden_imatrix: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(struct.pack("<i", 3) + b"\x05\x00\x00\x00abc")
    with pytest.raises(ImatrixError, match=r"bad\.dat: truncated"):
        read_imatrix(bad)
    text = tmp_path / "text.gguf"
    text.write_text("GGUF but not really")
    with pytest.raises(ImatrixError, match=r"text\.gguf: corrupted"):
        read_imatrix(text)
    with pytest.raises(ImatrixError, match="no such imatrix"):
        read_imatrix(tmp_path / "none.gguf")
    im = read_imatrix(golden_imatrix)
    other = open_model(fixtures.synthetic("gqa4-untied"))
    with pytest.raises(
        ImatrixError, match=r"entry blk\.0\.\w+\.weight has \d+ values.*another model"
    ):
        im.check_model(other)
    smol = open_model(fixtures.fixture_path("smollm2"))
    with pytest.raises(
        ImatrixError, match=r"no importance data for tensor\(s\) token_embd\.weight"
    ):
        im.check_model(smol, ["token_embd.weight"])
