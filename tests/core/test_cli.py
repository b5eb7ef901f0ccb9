"""The ``lwq`` command line, run as a user runs it (a subprocess), on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fixtures

COMMANDS = ["inspect", "upcast", "plan", "quantize", "recipe"]


def lwq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help(command: str) -> None:
    r = lwq(*([command] if command else []), "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: lwq" in r.stdout


def test_inspect_json_on_stdout_only() -> None:
    r = lwq("inspect", str(fixtures.synthetic("moe8")), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["n_expert"] == 8 and d["architecture"] == "llama"
    t = next(t for t in d["tensors"] if t["name"] == "blk.1.ffn_up_exps.weight")
    assert t["shape"] == [256, 256, 8] and t["layer"] == 1 and t["kind"] == "ffn_up_exps"


def test_plan_preset_with_edit_and_json(tmp_path: Path) -> None:
    model = fixtures.synthetic("gqa4-untied")
    out = tmp_path / "p.json"
    r = lwq("plan", str(model), "--preset", "Q4_K_M", "--set", "blk.0.attn_q.weight=Q8_0",
            "-o", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["tensors"]["blk.0.attn_q.weight"] == "Q8_0" and d["preset"] is None
    assert json.loads(out.read_text())["tensors"] == d["tensors"]
    assert "total:" in r.stderr and "bpw" in r.stderr


def test_recipe_prints_native_command(tmp_path: Path) -> None:
    model = fixtures.synthetic("gqa4-untied")
    plan = tmp_path / "p.json"
    assert lwq("plan", str(model), "--preset", "Q5_K_M", "-o", str(plan)).returncode == 0
    r = lwq("recipe", str(plan), "--model", str(model), "-o", "out.gguf")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("llama-quantize --pure --tensor-type-file ")
    assert r.stdout.strip().endswith("out.gguf Q5_K_M")
    types = (tmp_path / "p.tensor-types.txt").read_text().split()
    assert len(types) == 8 * 7 + 2 and "^output\\.weight$=q6_k" in types


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["inspect", "{text}"], "not a GGUF file"),
        (["inspect", "{missing}"], "no such file"),
        (["plan", "{model}", "--preset", "Q9_K"], "unknown preset"),
        (["plan", "{model}", "--from", "{text}"], "invalid JSON"),
        (["plan", "{smol}", "--preset", "Q4_K_M", "--set", "blk.0.attn_q.weight=Q3_K", "--strict"],
         "(--strict)"),
        (["plan", "{model}", "--preset", "Q4_K_M", "--set", "blk.9.attn_q.weight=Q4_K"], "blk.9.attn_q"),
        (["quantize", "{model}", "--preset", "IQ2_XXS", "-o", "{out}"], "requires an importance matrix"),
        (["quantize", "{model}", "--preset", "Q4_K_M", "-o", "/nonexistent/dir/x.gguf"], "does not exist"),
        (["upcast", "{model}", "-o", "{model}"], "overwrite the input"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(args: list[str], needle: str, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("just text\n")
    model = fixtures.synthetic("phi3-qkv")
    out = tmp_path / "out.gguf"
    subs = {"{text}": str(text), "{missing}": str(tmp_path / "missing.gguf"),
            "{model}": str(model), "{out}": str(out), "{smol}": str(fixtures.fixture_path("smollm2"))}  # fmt: skip
    r = lwq(*[subs.get(a, a) for a in args])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("lwq: error: ")
    assert not out.exists()


@pytest.mark.slow
def test_quantize_cli_end_to_end(tmp_path: Path) -> None:
    model = fixtures.synthetic("gqa4-untied")
    out = tmp_path / "q.gguf"
    r = lwq(
        "quantize", str(model), "--preset", "Q4_K_M", "-o", str(out), "--threads", "2", "--json"
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["n_overrides"] == 58 and Path(d["sidecar"]).exists() and out.exists()
    assert "quantize [" in r.stderr  # the progress bar


def test_plan_says_which_size_is_which() -> None:
    """``lwq plan`` prints the tensor data and the file on disk; ``--json`` has both."""
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.plan import plan_from_preset, predict_file_size

    model = fixtures.synthetic("gqa4-untied")
    r = lwq("plan", str(model), "--preset", "Q4_K_M", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    m = open_model(model)
    fs = predict_file_size(plan_from_preset(m, "Q4_K_M"), m)
    assert d["file_bytes"] == fs.total and d["size_bytes"] == fs.tensor_data
    assert "total: tensor data " in r.stderr and " on disk (tensor data " in r.stderr


#: candidate types of the auto-plan tests: quick to measure
QUICK_TYPES = "Q4_0,Q5_0,Q8_0,Q3_K,Q4_K,Q5_K,Q6_K,F16"


def test_plan_auto_budget_on_disk_or_of_tensor_data() -> None:
    """``--target-size`` is the file on disk, ``--target-data-size`` its tensor data."""
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.plan import plan_from_preset, predict_file_size

    model = fixtures.synthetic("gqa4-untied")
    m = open_model(model)
    size = predict_file_size(plan_from_preset(m, "Q4_K_M"), m).total
    common = ("--max-rows", "16", "--types", QUICK_TYPES, "--json")
    r = lwq("plan", str(model), "--auto", "--target-size", f"{size}B", *common)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["budget_on_disk"] and 0.99 * size <= d["file_bytes"] <= size
    assert d["used"] == d["file_bytes"] / size
    assert f"budget {size}B: " in r.stderr and " on disk, plan: file " in r.stderr
    r = lwq("plan", str(model), "--auto", "--target-data-size", f"{size}B", *common)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert not d["budget_on_disk"] and d["size_bytes"] <= size < d["file_bytes"]
    assert " of tensor data, plan: tensor data " in r.stderr
    bad = lwq("plan", str(model), "--auto", "--target-data-size", "-1GB")
    assert bad.returncode == 1 and "--target-data-size: size '-1GB' is negative" in bad.stderr
