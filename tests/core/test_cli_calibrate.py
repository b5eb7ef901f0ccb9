"""``lwq calibrate`` and ``lwq plan --auto`` picking the project's calibration, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.modelfile.hashing import sha256_file as file_hash
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.optimize.calibration import PROBES, Calibration, CalibrationPoint, groups

ROWS = "16"
#: plan candidates: the calibration probes share their sensitivity cache entry with calibrate
TYPES = ",".join(PROBES)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Private data dir and caches (sensitivity, base logits) for the whole module."""
    root = tmp_path_factory.mktemp("lwq-home")
    return {
        **os.environ,
        "LWQ_DATA_DIR": str(root / "data"),
        "LWQ_CACHE_DIR": str(root / "cache"),
    }


def lwq(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )


def _project_calibration(env: dict[str, str], model_hash: str, imatrix: Path) -> Path:
    digest = file_hash(imatrix)
    folder = Path(env["LWQ_DATA_DIR"]) / "projects" / model_hash[:16]
    return folder / f"calibration-{digest[:12]}.json"


def _plan(env: dict[str, str], smollm2: Path, imatrix: Path, *extra: str) -> tuple[int, dict, str]:
    r = lwq(env, "plan", smollm2, "--auto", "--imatrix", imatrix, "--target-bpw", "4.3",
            "--max-rows", ROWS, "--types", TYPES, "--threads", "2", "--json", *extra)  # fmt: skip
    return r.returncode, json.loads(r.stdout) if r.returncode == 0 else {}, r.stderr


def test_help() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", "calibrate", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "usage: lwq calibrate" in r.stdout
    assert "--imatrix" in r.stdout and "--groups" in r.stdout
    from lwq_app.cli import calibrate_command as cli_calibrate
    from lwq_app.core.optimize import calibration as calibrate

    assert cli_calibrate.DEFAULT_GROUPS == calibrate.DEFAULT_GROUPS
    assert cli_calibrate.DEFAULT_CHUNKS == calibrate.DEFAULT_CHUNKS


def test_plan_uses_project_calibration(
    env: dict[str, str], smollm2: Path, golden_imatrix: Path, manifest: dict
) -> None:
    """Found by (model, imatrix), announced, applied; --no-calibration and a mismatch too."""
    model_hash = manifest["fixtures"]["smollm2_offgrid_f16_tensor_data_sha256"]
    cal_file = _project_calibration(env, model_hash, golden_imatrix)

    rc, raw, err = _plan(env, smollm2, golden_imatrix)
    assert rc == 0, err
    assert raw["calibration"] is None and "no calibration for this model and imatrix" in err

    # a hand-made calibration: errors in the first half's ffn_down (the only tensors wide
    # enough for K-quants, so the only choice the planner has) cost 1000× more KLD
    model = open_model(smollm2)
    early = [f"blk.{i}.ffn_down.weight" for i in range(15)]
    pts = tuple(
        CalibrationPoint(k, layers, "Q4_0", 1.0, 1.0 if k == "ffn_down" and 0 in layers else 1e-3)
        for k, layers in groups(model, 2)
    )
    cal_file.parent.mkdir(parents=True)
    Calibration(model_hash, file_hash(golden_imatrix), 0.0, pts).save(cal_file)
    rc, cal, err = _plan(env, smollm2, golden_imatrix)
    assert rc == 0, err
    assert f"using calibration from {cal_file}" in err and cal["calibration"] == str(cal_file)
    bits = {"Q2_K": 2.625, "Q3_K": 3.4375, "Q4_0": 4.5, "IQ4_NL": 4.5}
    assert sum(bits[cal["tensors"][n]] for n in early) > sum(bits[raw["tensors"][n]] for n in early)

    rc, forced, err = _plan(env, smollm2, golden_imatrix, "--no-calibration")
    assert rc == 0, err
    assert forced["calibration"] is None and forced["tensors"] == raw["tensors"]
    assert "using calibration" not in err

    other = Calibration("0" * 64, file_hash(golden_imatrix), 0.0, pts)
    other.save(cal_file)
    rc, _, err = _plan(env, smollm2, golden_imatrix)
    assert rc == 1 and err.strip().splitlines()[-1].startswith(
        f"lwq: error: {cal_file}: calibration was measured on another model"
    )

    explicit = cal_file.with_name("explicit.json")
    Calibration(model_hash, "1" * 64, 0.0, pts).save(explicit)
    rc, _, err = _plan(env, smollm2, golden_imatrix, "--calibration", str(explicit))
    assert rc == 1 and f"{explicit}: calibration was measured with imatrix 111111111111…" in err
    cal_file.unlink()
    explicit.unlink()


def test_calibrate_bad_input(
    env: dict[str, str], smollm2: Path, golden_imatrix: Path, tmp_path: Path
) -> None:
    env = {**env, "LWQ_DATA_DIR": str(tmp_path / "data")}
    r = lwq(env, "calibrate", smollm2)
    assert r.returncode == 2 and "--imatrix" in r.stderr
    r = lwq(env, "calibrate", smollm2, "--imatrix", "x.gguf", "-f", tmp_path / "missing.txt")
    assert r.returncode == 1 and "missing.txt: no such text file" in r.stderr
    r = lwq(env, "calibrate", smollm2, "--imatrix", golden_imatrix, "--groups", "0")
    assert r.returncode == 1 and "at least 1 depth group" in r.stderr
    r = lwq(env, "calibrate", smollm2, "--imatrix", tmp_path / "none.gguf")
    assert r.returncode == 1 and "none.gguf: no such imatrix file" in r.stderr
    small = fixtures.synthetic("gqa4-untied")
    r = lwq(env, "calibrate", small, "--imatrix", golden_imatrix)
    assert r.returncode == 1 and "imatrix is for another model" in r.stderr
    r = lwq(env, "calibrate", smollm2, "--imatrix", golden_imatrix, "-o", "/nonexistent/d/c.json")
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert not Path(env["LWQ_DATA_DIR"], "projects").exists()  # nothing started, nothing made


@pytest.mark.slow
def test_calibrate_end_to_end(
    env: dict[str, str], smollm2: Path, golden_imatrix: Path, manifest: dict, tmp_path: Path
) -> None:
    """The smallest real run (1 depth group, 1 chunk of 128 tokens) lands in the project."""
    model_hash = manifest["fixtures"]["smollm2_offgrid_f16_tensor_data_sha256"]
    copy = tmp_path / "copy.json"
    t0 = time.monotonic()
    r = lwq(env, "calibrate", smollm2, "--imatrix", golden_imatrix, "--groups", "1",
            "--chunks", "1", "--ctx", "128", "--max-rows", ROWS, "--threads", "2",
            "-o", copy, "--json")  # fmt: skip
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    cal_file = _project_calibration(env, model_hash, golden_imatrix)
    d = json.loads(r.stdout)
    assert d["calibration"] == str(cal_file) and f"wrote {cal_file}" in r.stderr
    assert "no -f TEXT: using the bundled calibration text" in r.stderr
    assert d["settings"]["text"].endswith("lwq-calibration-v1.txt")
    assert d["settings"] | {"n_ctx": 128, "n_chunks": 1, "n_groups": 1} == d["settings"]
    cal = Calibration.load(cal_file)
    assert cal == Calibration.load(copy)
    assert cal.model_hash == model_hash and cal.imatrix_hash == file_hash(golden_imatrix)
    assert {p.kind for p in cal.points} == {"attn_q", "attn_k", "attn_v", "attn_output",
                                           "ffn_gate", "ffn_up", "ffn_down", "token_embd"}  # fmt: skip
    assert all(p.layers == tuple(range(30)) for p in cal.points if p.kind != "token_embd")
    assert all(p.proxy > 0 for p in cal.points) and sum(p.kld for p in cal.points) > 0
    assert "ffn_down" in r.stderr and "×median" in r.stderr  # the factor table
    meta = json.loads((cal_file.parent / "project.json").read_text())
    assert meta["tensor_data_sha256"] == model_hash
    assert str(smollm2.resolve()) in meta["paths"]
    assert not list(cal_file.parent.glob("*.lwq-tmp"))
    print(f"calibrate CLI: {seconds:.0f}s")

    rc, plan, err = _plan(env, smollm2, golden_imatrix)
    assert rc == 0, err
    assert plan["calibration"] == str(cal_file) and f"using calibration from {cal_file}" in err
    cal_file.unlink()


@pytest.mark.slow
def test_calibrate_ctrl_c_writes_nothing(
    env: dict[str, str], smollm2: Path, golden_imatrix: Path, manifest: dict, tmp_path: Path
) -> None:
    model_hash = manifest["fixtures"]["smollm2_offgrid_f16_tensor_data_sha256"]
    copy = tmp_path / "copy.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwq_app.cli", "calibrate", str(smollm2), "--imatrix",
         str(golden_imatrix), "--groups", "1", "--chunks", "1", "--ctx", "128",
         "--max-rows", ROWS, "--threads", "2", "-o", str(copy)],
        stderr=subprocess.PIPE, text=True, env=env,
        # a suite started in the background inherits SIGINT ignored, and Python then never
        # raises KeyboardInterrupt: give the command the default disposition Ctrl-C has
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert proc.stderr is not None
    seen = ""
    while "baseline" not in seen:  # the probe runs have started
        line = proc.stderr.readline()
        assert line, f"calibrate ended early: {seen}"
        seen += line
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + rest
    assert "interrupted; nothing was written" in rest
    folder = _project_calibration(env, model_hash, golden_imatrix).parent
    assert not list(folder.glob("calibration-*")) and not list(folder.glob("*.lwq-tmp"))
    assert not copy.exists() and not list(tmp_path.glob("*.lwq-tmp"))
