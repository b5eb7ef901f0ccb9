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
from lwq_app.core.errors import OutputError
from lwq_app.core.imatrix import Imatrix, ImatrixEntry, write_gguf
from lwq_app.core.model import open_model
from lwq_app.core.plan import plan_from_preset
from lwq_app.core.quantize import quantize

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
    r = quantize(model, plan, out, imatrix_path=im, threads=2)
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
            quantize(model, plan, small / "out.gguf")
        assert list(small.iterdir()) == []
