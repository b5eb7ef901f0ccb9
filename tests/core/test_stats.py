"""`lwq stats` against `llama-imatrix --in-file … --show-statistics` (tests/golden).

``smollm2.imatrix.stats.txt`` is the tool's output as ``make_golden.py`` captured it: llama.cpp
logs asynchronously and drops the tail when the process exits, so it stops mid-table.
``smollm2.imatrix.stats.full.txt`` is the same command run with ``LD_PRELOAD`` of
``slowexit.c`` (an atexit pause that lets the log thread flush): every tensor row and the
per-layer table. Both are compared line by line.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lwq_app.core.importance.heatmap import heatmap, stats_heatmap
from lwq_app.core.importance.statistics import compute_stats, format_stats
from lwq_app.core.modelfile.imatrix_file import read_imatrix
from lwq_app.core.modelfile.inventory import open_model

_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [IWE] ?")


def _rows(text: str) -> list[str]:
    """Tab-separated table lines without llama.cpp's log prefix (complete lines only)."""
    out = []
    for line in text.splitlines():
        line = _PREFIX.sub("", line)
        if line.count("\t") >= 3 and line.rstrip().endswith(
            ("%", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
        ):
            out.append(line)
    return out


@pytest.mark.parametrize("golden", ["smollm2.imatrix.stats.txt", "smollm2.imatrix.stats.full.txt"])
def test_table_matches_llama_imatrix(golden_dir: Path, golden_imatrix: Path, golden: str) -> None:
    want = _rows((golden_dir / golden).read_text(encoding="utf-8"))
    got = _rows(format_stats(compute_stats(read_imatrix(golden_imatrix))))
    data_rows = [r for r in want if not r.lstrip().startswith(("Layer", "Tensor"))]
    assert len(data_rows) > 150
    # the truncated golden ends early (its last line may be cut): every complete line it
    # has must be ours, in the same order
    want = want if golden.endswith("full.txt") else want[:-1]
    assert got[: len(want)] == want
    if golden.endswith("full.txt"):
        assert got == want
        assert len([r for r in want if r.count("\t") == 3]) == 30  # one row per layer


def test_layer_aggregates_and_json(golden_imatrix: Path) -> None:
    st = compute_stats(read_imatrix(golden_imatrix))
    assert len(st.tensors) == 210 and [x.layer for x in st.layers] == list(range(30))
    layer3 = [t for t in st.tensors if t.layer == 3]
    n = sum(t.n for t in layer3)
    assert st.layers[3].n_elements == n
    assert math.isclose(
        st.layers[3].mean_sum_act2, sum(t.n * t.sum_act2 for t in layer3) / n, rel_tol=1e-5
    )
    assert all(t.cossim == 0.0 for t in st.tensors if t.layer == 0)
    d = json.loads(json.dumps(st.to_dict()))
    assert d["tensors"][0]["name"] == "blk.18.attn_k.weight"


def test_cli_stats(golden_imatrix: Path, golden_dir: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", "stats", str(golden_imatrix)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    want = _rows((golden_dir / "smollm2.imatrix.stats.full.txt").read_text(encoding="utf-8"))
    assert _rows(r.stdout) == want
    j = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", "stats", str(golden_imatrix), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert len(json.loads(j.stdout)["tensors"]) == 210


def test_corrupt_imatrix_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 20)
    r = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", "stats", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 1 and "bad.gguf" in r.stderr and "Traceback" not in r.stderr


def test_heatmap_marks_missing_cells(smollm2: Path, golden_imatrix: Path) -> None:
    model = open_model(smollm2)
    st = compute_stats(read_imatrix(golden_imatrix))
    names = [t.name for t in model.tensors if t.quantizable]
    hm = stats_heatmap(st, "sum_act2", names)
    assert hm.layers == tuple(range(30))
    assert hm.kinds[:3] == ("attn_q", "attn_k", "attn_v")
    assert hm.values.shape == (30, len(hm.kinds)) and hm.present.all()
    q18 = st.by_name()["blk.18.attn_k.weight"].sum_act2
    assert hm.cell(18, "attn_k") == pytest.approx(q18)
    assert "token_embd.weight" not in hm.extra  # no imatrix data for it: not invented
    partial = heatmap({"blk.0.attn_q.weight": 1.0, "blk.1.attn_k.weight": float("nan")}, "x", names)
    assert partial.cell(0, "attn_q") == 1.0
    assert partial.cell(1, "attn_k") is None and partial.cell(5, "ffn_down") is None
    assert np.isnan(partial.values[~partial.present]).all()
    assert partial.present.sum() == 1
    with pytest.raises(KeyError, match="nope"):
        stats_heatmap(st, "nope")
