"""Stock mixes on the synthetic architectures: written types and bytes equal the plan's.

``quantize`` itself refuses to rename an output whose types or tensor bytes differ from the
plan, so each run here is a check of the predicted size against a real llama.cpp file.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import fixtures
from lwq_app.core.jobs.errors import OutputError
from lwq_app.core.modelfile.imatrix_file import Imatrix, ImatrixEntry, write_gguf
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.plan.quantize import QuantizeRequest, quantize

pytestmark = pytest.mark.slow

PRESETS = [
    "Q2_K",
    "Q3_K_M",
    "Q4_0",
    "Q4_K_M",
    "Q5_1",
    "Q5_K_S",
    "Q6_K",
    "IQ4_XS",
    "IQ3_M",
    "IQ2_XXS",
]


def ones_imatrix(model_path: Path, out: Path) -> Path:
    m = open_model(model_path)
    entries = {
        t.name: ImatrixEntry(t.name, np.ones((t.n_experts, t.ne0), np.float32),
                             np.full(t.n_experts, 512.0, np.float32))
        for t in m.tensors
        if t.quantizable
    }  # fmt: skip
    write_gguf(Imatrix(entries, ("ones",), 1, 512), out)
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_written_file_matches_plan(synthetic_model: Path, preset: str, tmp_path: Path) -> None:
    model = open_model(synthetic_model)
    im = ones_imatrix(synthetic_model, tmp_path / "ones.imatrix.gguf")
    plan = plan_from_preset(model, preset, with_imatrix=True)
    out = tmp_path / f"{preset}.gguf"
    r = quantize(QuantizeRequest(synthetic_model, plan, out, imatrix=im, threads=2))
    written = open_model(out)
    assert {t.name: t.type for t in written.tensors} == plan.effective_types()
    assert written.tensor_data_bytes == plan.size_bytes == r.tensor_bytes
    assert r.base_ftype == preset


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_not_enough_disk_is_refused_before_writing(tmp_path: Path) -> None:
    model = open_model(fixtures.synthetic("gqa4-untied"))
    plan = plan_from_preset(model, "Q8_0")
    assert plan.size_bytes > 2 * 2**20
    with small_filesystem(tmp_path / "small", "2M") as small:
        with pytest.raises(OutputError, match=r"not enough disk space: need 0\.0\d GB"):
            quantize(QuantizeRequest(model.path, plan, small / "out.gguf"))
        assert list(small.iterdir()) == []


def test_split_source_model(tmp_path: Path) -> None:
    """A sharded source is read as one model and quantized into a single file."""
    first = fixtures.make_synthetic("gqa4-untied", tmp_path / "gqa4.gguf", split_max_tensors=20)
    model = open_model(first)
    assert len(model.paths) == 4 and len(model.tensors) == 75
    plan = plan_from_preset(model, "Q4_K_M")
    out = tmp_path / "merged-q4_k_m.gguf"
    r = quantize(QuantizeRequest(first, plan, out, threads=2))
    written = open_model(out)
    assert (
        len(written.paths) == 1 and written.tensor_data_bytes == plan.size_bytes == r.tensor_bytes
    )


def test_bf16_source(tmp_path: Path) -> None:
    """Upcast to BF16 (round to nearest even) and quantize from the BF16 source."""
    from gguf import GGUFReader

    from lwq_app.core.modelfile.upcast import UpcastRequest, upcast

    src = fixtures.synthetic("phi3-qkv")
    q8 = tmp_path / "q8.gguf"
    quantize(QuantizeRequest(src, plan_from_preset(open_model(src), "Q8_0"), q8, threads=2))
    bf = tmp_path / "bf16.gguf"
    upcast(UpcastRequest(q8, bf, "BF16"))
    m = open_model(bf)
    assert {t.type for t in m.tensors if len(t.shape) >= 2} == {"BF16"}
    r_q8, r_bf = GGUFReader(q8), GGUFReader(bf)
    from gguf.quants import dequantize

    t8 = next(t for t in r_q8.tensors if t.name == "blk.0.attn_qkv.weight")
    tb = next(t for t in r_bf.tensors if t.name == "blk.0.attn_qkv.weight")
    want = dequantize(t8.data, t8.tensor_type).reshape(-1)
    got = dequantize(tb.data, tb.tensor_type).reshape(-1)
    np.testing.assert_allclose(got, want, rtol=2**-8)
    out = tmp_path / "from-bf16.gguf"
    plan = plan_from_preset(m, "Q4_K_M")
    assert quantize(QuantizeRequest(bf, plan, out, threads=2)).tensor_bytes == plan.size_bytes
