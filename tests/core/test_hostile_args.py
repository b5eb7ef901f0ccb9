"""Arguments (issue #9): sizes, bpw, memory, thread and context counts and preset names are
checked in one place, before any work, with one line naming the option; the real CLI exits 1
with exactly one stderr line, no traceback, no leftover file, its inputs unchanged."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

import fixtures
from lwq_app.cli.main import main
from lwq_app.core.jobs.arguments import (
    bpw_option,
    count_option,
    gpu_layers_option,
    size_option,
    threads_option,
)
from lwq_app.core.jobs.errors import InputError
from lwq_app.core.jobs.units import parse_size

DIGITS_310 = "1" * 310


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("-1GB", "negative"),
        ("0GB", "above 0"),
        ("-0GB", "above 0"),
        ("nanGB", "needs a number and a unit"),
        ("infGB", "needs a number and a unit"),
        ("nan", "needs a number and a unit"),
        (DIGITS_310 + "GB", "too long"),
        ("9" * 40 + "GB", "too large"),
        ("99999999999TiB", "too large"),
        ("3.9", "unit"),
        ("12 apples", "unknown size unit"),
        ("1\x00GB", "needs a number"),
        ("1" * 100_000, "too long"),
        ("", "needs a number"),
    ],
)
def test_size_option_names_the_option(text: str, needle: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(InputError) as e:
        size_option(text, "--target-size")
    msg = str(e.value)
    assert msg.startswith("--target-size") and needle in msg and "\n" not in msg
    assert time.monotonic() - t0 < 0.5  # no regex backtracking on long digit runs


def test_sizes_still_parse() -> None:
    assert size_option("3.9GB", "--target-size") == 3_900_000_000
    assert parse_size("3.6GiB") == round(3.6 * 2**30)
    with pytest.raises(ValueError, match="unit"):
        parse_size("3.9 gigs")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1, 0, 32.5, 1e308, "4", True])
def test_bpw_option(value: object) -> None:
    with pytest.raises(InputError, match=r"^--target-bpw .*above 0 and at most 32"):
        bpw_option(value)


def test_counts_and_threads() -> None:
    assert threads_option(0) == 0 and bpw_option(4) == 4.0
    for bad in (-1, 10**9, True, 2.0):
        with pytest.raises(InputError, match=r"^--threads"):
            threads_option(bad)
    with pytest.raises(InputError, match=r"^--gpu-layers -2: must be at least 0"):
        gpu_layers_option(-2)
    assert count_option(-1, "--chunks", all_value=-1) == -1
    with pytest.raises(InputError, match=r"^--chunks 0: must be at least 1 \(-1 = all\)"):
        count_option(0, "--chunks", all_value=-1)


# --- the real CLI, in-process --------------------------------------------------------------


@pytest.fixture
def model() -> Path:
    return fixtures.synthetic("gqa4-untied")


def _snapshot(*paths: Path) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


def _fails_in_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], *watch: Path
) -> str:
    before = _snapshot(*watch)
    assert main(argv) == 1
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("lwq: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in out.err and out.out == ""
    assert _snapshot(*watch) == before  # no leftover file, inputs unchanged
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target-size", "-1GB"], "--target-size: size '-1GB' is negative"),
        (["--target-size", "0GB"], "--target-size 0GB: must be above 0"),
        (["--target-size", DIGITS_310 + "GB"], "--target-size"),
        (["--target-size", "nan"], "--target-size"),
        (["--target-bpw", "inf"], "--target-bpw inf"),
        (["--target-bpw", "nan"], "--target-bpw nan"),
        (["--target-bpw", "-3"], "--target-bpw -3.0"),
        (["--target-bpw", "33"], "--target-bpw 33.0"),
        (["--target-memory", "-1GB"], "--target-memory"),
        (["--target-memory", "1GB", "--context", "0"], "--context 0"),
        (["--target-bpw", "4", "--threads", "-1"], "--threads -1"),
        (["--target-bpw", "4", "--max-rows", "-5"], "--max-rows -5"),
        (["--target-bpw", "4", "--compare", "BOGUS"], "--compare: unknown preset 'BOGUS'"),
    ],
)
def test_plan_auto_bad_arguments(
    args: list[str], needle: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.json"
    t0 = time.monotonic()
    _fails_in_one_line(["plan", str(model), "--auto", *args, "-o", str(out)], needle, capsys,
                       model, tmp_path)  # fmt: skip
    assert time.monotonic() - t0 < 5  # before any measuring
    assert not out.exists()


def test_recipe_with_unknown_base_ftype_prints_no_command(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "p.json"
    assert main(["plan", str(model), "--preset", "Q4_K_M", "-o", str(plan)]) == 0
    capsys.readouterr()
    _fails_in_one_line(
        ["recipe", str(plan), "--model", str(model), "--base-ftype", "BOGUS"],
        "--base-ftype: unknown preset 'BOGUS'", capsys, model, tmp_path,
    )  # fmt: skip
    assert not (tmp_path / "p.tensor-types.txt").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--preset", "Q4_K_M", "--base-ftype", "BOGUS"], "--base-ftype: unknown preset"),
        (["--preset", "BOGUS"], "--preset: unknown preset 'BOGUS'"),
        (["--preset", "Q4_K_M", "--threads", "100000000"], "--threads 100000000: too large"),
        (["--preset", "Q4_K_M", "--gpu-layers", "-4"], "--gpu-layers -4"),
    ],
)
def test_quantize_bad_arguments(
    args: list[str], needle: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.gguf"
    _fails_in_one_line(["quantize", str(model), *args, "-o", str(out)], needle, capsys, model,
                       tmp_path)  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_upcast_into_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = fixtures.smollm2_q4_1()
    out = tmp_path / "missing" / "up.gguf"
    _fails_in_one_line(["upcast", str(src), "-o", str(out)], "does not exist", capsys, src,
                       tmp_path)  # fmt: skip
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["eval", "{model}", "--ctx", "0", "--no-store"], "--ctx 0"),
        (["eval", "{model}", "--threads", "-2", "--no-store"], "--threads -2"),
        (["imatrix", "{model}", "-f", "{model}", "-o", "{out}", "--ctx", "99999999999"], "--ctx"),
        (["calibrate", "{model}", "--imatrix", "{model}", "--max-rows", "-1"], "--max-rows -1"),
    ],
)
def test_shared_arguments_checked_for_every_command(
    argv: list[str], needle: str, model: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    subs = {"{model}": str(model), "{out}": str(tmp_path / "o.gguf")}
    _fails_in_one_line([subs.get(a, a) for a in argv], needle, capsys, model, tmp_path)
