"""``lwq eval / tasks / bench / report`` run as a user runs them (subprocess), on real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.evaluate.task_files import write_multiple_choice

WIKI = fixtures.WIKI


def lwq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize("command", ["eval", "tasks", "bench", "report"])
def test_help(command: str) -> None:
    r = lwq(command, "--help")
    assert r.returncode == 0, r.stderr
    assert f"usage: lwq {command}" in r.stdout


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    r = lwq("report", str(tmp_path / "missing.gguf"))
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert "missing.gguf: no such model file" in r.stderr


@pytest.mark.slow
def test_eval_tasks_bench_report_pipeline(smollm2: Path, tmp_path: Path) -> None:
    model = tmp_path / "smol.gguf"
    shutil.copy(smollm2, model)
    text = tmp_path / "wiki.txt"
    text.write_bytes(WIKI.read_bytes()[:40_000])
    cache = tmp_path / "cache"
    base = ["--ctx", "128", "--chunks", "2", "--threads", "2", "--cache-dir", str(cache)]
    r = lwq("eval", str(model), "-f", str(text), "--base", str(smollm2), *base, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["stats"]["count"] == 2 * 63 and d["stats"]["kld"] == pytest.approx(0, abs=1e-6)
    assert d["perplexity"]["ppl"] == pytest.approx(d["stats"]["ppl_base"], rel=1e-6)
    assert len(list(cache.iterdir())) == 1

    mc = tmp_path / "arc.bin"
    q = "one two three one two three one two three one two"
    write_multiple_choice(mc, [(q, ["three one two", "zebra lamp"], [1, 0])] * 3)
    r = lwq("tasks", str(model), "--arc", str(mc), "--ctx", "128", "--threads", "2", "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)[0]
    assert t["name"] == "arc" and t["n_tasks"] == 3 and t["score"] == 100.0

    r = lwq("bench", str(model), "-p", "32", "-n", "4", "-r", "2", "--threads", "2", "--json")
    assert r.returncode == 0, r.stderr
    recs = json.loads(r.stdout)
    assert [(x["n_prompt"], x["n_gen"]) for x in recs] == [(32, 0), (0, 4)]
    assert all(x["avg_ts"] > 0 and len(x["samples_ts"]) == 2 for x in recs)
    assert "| model " in r.stderr and "pp32" in r.stderr and "tg4" in r.stderr
    assert "before: load average" in r.stderr and "after: load average" in r.stderr

    out = tmp_path / "README.md"
    r = lwq("report", str(model), "--reference", str(smollm2), "-o", str(out))
    assert r.returncode == 0, r.stderr
    md = out.read_text()
    assert "| smol | 0.27 GB | 0.00% |" in md
    assert "μKLD" in md and "0.000000" in md and "pp32" in md and "tg4" in md
    stored = json.loads((tmp_path / "smol.gguf.lwq-results.json").read_text())
    assert stored["variant"]["tensor_data_sha256"] and stored["versions"]["lwq"]


def test_bench_at_depth_like_llama_bench(smollm2: Path) -> None:
    """-d fills the cache untimed before each run: one record per test × depth, named as
    llama-bench names them, positions continuing after the fill (a decode past n_ctx fails)."""
    r = lwq(
        "bench", str(smollm2), "-p", "16", "-n", "4", "-d", "0,96", "-r", "1", "--threads", "2",
        "--json", "--no-store",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    recs = json.loads(r.stdout)
    assert [(x["n_prompt"], x["n_gen"], x["n_depth"]) for x in recs] == [
        (16, 0, 0), (16, 0, 96), (0, 4, 0), (0, 4, 96),
    ]  # fmt: skip
    assert "pp16 @ d96" in r.stderr and "tg4 @ d96" in r.stderr
    assert all(x["avg_ts"] > 0 for x in recs)
    # llama-bench's device fields, read from ggml's registry (this CI build is CPU-only)
    assert {(x["backends"], x["gpu_info"]) for x in recs} == {("CPU", "")}
