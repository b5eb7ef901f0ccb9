"""``lwq gui --tour``: the real app, in a process of its own, through every step.

Offscreen, on SmolLM2 (its quantized Q4_1 file: the tour starts with the F16 upcast a new
user sees) and on two synthetic architectures carrying SmolLM2's tokenizer, fused qkv
(phi3) and MoE; each must finish in 4.5 minutes (Run and Results included) with exit 0
and one 1440×900 PNG per step.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fixtures

STEPS = (
    "start",
    "model",
    "target",
    "importance-collecting",
    "importance",
    "importance-linear",
    "sensitivity",
    "tensor-details",
    "plan",
    "plan-auto",
    "plan-drag",
    "quantize-running",
    "quantized",
    "run-queue",
    "run-done",
    "results",
    "results-scatter",
)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", head[16:24])
    return w, h


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-q4_1", "qkv", "moe"])
def test_tour(model: str, tmp_path: Path) -> None:
    path = fixtures.smollm2_q4_1() if model == "smollm2-q4_1" else fixtures.tokenized(model)
    out = tmp_path / "shots"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "LWQ_DATA_DIR": str(tmp_path / "data"), "LWQ_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "lwq_app", "--tour", str(out), str(path)],
        env=env, capture_output=True, text=True, timeout=330,
    )  # fmt: skip
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    shots = sorted(p.name for p in out.glob("*.png"))
    assert shots == [f"{i:02d}-{s}.png" for i, s in enumerate(STEPS, 1)], r.stderr[-2000:]
    for name in shots:
        assert png_size(out / name) == (1440, 900), name
    assert seconds < 270, f"the tour took {seconds:.0f} s"
