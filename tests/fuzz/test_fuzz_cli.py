"""A sample of the fuzz cases through the real CLI, one subprocess each (issue #9).

Cases are drawn from the in-process mutators (seed ``CLI_SEED``) among those the library
rejects, then run as ``python -m lwq_app.cli inspect|stats|plan|quantize|recipe ...``.
Each must: exit 1, print exactly one stderr line (``lwq: error: ...``; an "internal error"
is a bug), no ``Traceback`` anywhere, leave its output folder empty and its inputs unchanged
(SHA-256 before and after).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import harness
import pytest

CLI_SEED = 11
#: command -> (format of the mutated input, cases)
SAMPLE = {
    "inspect": ("model", 16),
    "stats": ("imatrix", 10),
    "stats-dat": ("dat", 5),
    "plan-imatrix": ("imatrix", 8),
    "plan-from": ("plan", 12),
    "quantize-plan": ("plan", 6),
    "quantize-model": ("model", 6),
    "quantize-imatrix": ("imatrix", 5),
    "plan-target-size": ("size", 8),
    "plan-target-bpw": ("bpw", 5),
    "recipe-base-ftype": ("", 1),
}


@dataclass
class CliCase:
    command: str
    fmt: str
    index: int
    desc: str
    argv: list[str]
    inputs: list[Path]
    out_dir: Path
    result: dict = field(default_factory=dict)


def _pick(fmt: str, n: int, work: Path) -> list[harness.Case]:
    """The first ``n`` cases of ``fmt`` the library rejects with an error or escape."""
    out, i = [], 0
    while len(out) < n and i < 5000:
        case = harness.make_case(fmt, CLI_SEED, i)
        o = harness.run_case(case, work)
        text = case.payload if isinstance(case.payload, str) else ""
        if o.kind in ("error", "escape", "hang") and "\x00" not in text:
            out.append(case)
        i += 1
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _build(root: Path) -> list[CliCase]:
    seeds = harness._seeds()["files"]
    model = seeds["model"]
    work = root / "probe"
    work.mkdir()
    cases: list[CliCase] = []
    suffix = {"model": ".gguf", "imatrix": ".imatrix.gguf", "dat": ".dat", "plan": ".json"}
    for command, (fmt, n) in SAMPLE.items():
        if command == "recipe-base-ftype":
            d = root / f"{command}-0"
            (d / "out").mkdir(parents=True)
            argv = [
                "recipe",
                str(seeds["plan"]),
                "--model",
                str(model),
                "--base-ftype",
                "BOGUS",
                "--types-file",
                str(d / "out" / "types.txt"),
                "-o",
                str(d / "out" / "x.gguf"),
            ]
            cases.append(
                CliCase(
                    command, fmt, 0, "--base-ftype BOGUS", argv, [model, seeds["plan"]], d / "out"
                )
            )
            continue
        picked = _pick(fmt, n, work)
        for case in picked:
            d = root / f"{command}-{case.index}"
            out = d / "out"
            out.mkdir(parents=True)
            mutated = None
            if fmt in suffix:
                mutated = d / f"input{suffix[fmt]}"
                data = case.payload
                mutated.write_bytes(
                    data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
                )
            inputs = [model] + ([mutated] if mutated else [])
            if command == "inspect":
                argv = ["inspect", str(mutated)]
            elif command in ("stats", "stats-dat"):
                argv = ["stats", str(mutated)]
            elif command == "plan-imatrix":
                argv = [
                    "plan",
                    str(model),
                    "--preset",
                    "Q4_K_M",
                    "--imatrix",
                    str(mutated),
                    "-o",
                    str(out / "plan.json"),
                ]
            elif command == "plan-from":
                argv = ["plan", str(model), "--from", str(mutated), "-o", str(out / "plan.json")]
            elif command == "quantize-plan":
                argv = ["quantize", str(model), "--plan", str(mutated), "-o", str(out / "q.gguf")]
            elif command == "quantize-imatrix":  # IQ2_XXS: llama.cpp aborts on bad values
                argv = [
                    "quantize",
                    str(model),
                    "--preset",
                    "IQ2_XXS",
                    "--imatrix",
                    str(mutated),
                    "-o",
                    str(out / "q.gguf"),
                ]
            elif command == "quantize-model":
                argv = ["quantize", str(mutated), "--preset", "Q4_K_M", "-o", str(out / "q.gguf")]
            elif command == "plan-target-size":
                argv = [
                    "plan",
                    str(model),
                    "--auto",
                    f"--target-size={case.payload}",
                    "-o",
                    str(out / "plan.json"),
                ]
            else:
                argv = [
                    "plan",
                    str(model),
                    "--auto",
                    f"--target-bpw={case.payload}",
                    "-o",
                    str(out / "plan.json"),
                ]
            cases.append(CliCase(command, fmt, case.index, case.desc, argv, inputs, out))
    return cases


def _run(c: CliCase) -> CliCase:
    before = {str(p): _sha(p) for p in c.inputs}
    env = dict(os.environ, PYTHONPATH=str(harness.ROOT), OPENBLAS_NUM_THREADS="1")
    try:
        p = subprocess.run(
            [sys.executable, "-m", "lwq_app.cli", *c.argv],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=120,
            env=env,
            cwd=c.out_dir,
        )
        c.result = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    except subprocess.TimeoutExpired:
        c.result = {"rc": "timeout", "stdout": "", "stderr": ""}
    c.result["changed"] = [k for k, v in before.items() if _sha(Path(k)) != v]
    c.result["left"] = sorted(p.name for p in c.out_dir.iterdir())
    return c


def _problems(c: CliCase) -> list[str]:
    r = c.result
    lines = r["stderr"].strip().splitlines()
    out = []
    if r["rc"] != 1:
        out.append(f"exit {r['rc']}")
    if "Traceback" in r["stderr"] + r["stdout"]:
        out.append("traceback")
    if len(lines) != 1:
        out.append(f"{len(lines)} stderr lines")
    elif not lines[0].startswith("lwq: error: "):
        out.append(f"not a project error: {lines[0][:160]!r}")
    if r["left"]:
        out.append(f"left {r['left']}")
    if r["changed"]:
        out.append(f"changed {r['changed']}")
    return out


@pytest.fixture(scope="module")
def cli_run() -> list[CliCase]:
    with tempfile.TemporaryDirectory(prefix="lwq-fuzz-cli-") as d:
        cases = _build(Path(d))
        with ThreadPoolExecutor(2) as ex:
            done = list(ex.map(_run, cases))
        print(f"\nCLI fuzz (seed {CLI_SEED}): {len(done)} cases")
        yield done


def test_cli_sample_size(cli_run: list[CliCase]) -> None:
    assert len(cli_run) >= 60


@pytest.mark.parametrize("command", list(SAMPLE))
def test_cli_one_clear_error(cli_run: list[CliCase], command: str) -> None:
    bad = []
    for c in cli_run:
        if c.command != command:
            continue
        probs = _problems(c)
        if probs:
            last = c.result["stderr"].strip().splitlines()[-1:] or [""]
            bad.append(
                f"{c.fmt} {CLI_SEED} {c.index} [{c.desc[:100]}]: {', '.join(probs)}; "
                f"stderr: {last[0][:200]!r}"
            )
    assert not bad, f"{command}: {len(bad)} case(s):\n" + "\n".join(bad)
