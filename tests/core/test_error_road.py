"""One error road (issue #9): only project errors leave a job; a bug is one line plus a log
file; a native crash names the job, the file and the tensor, its stderr goes to the log; a
failed llama.cpp load passes llama.cpp's own reason on; a hostile plan JSON is a PlanError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import fixtures
from lwq_app.cli.main import main
from lwq_app.core.jobs.boundary import public_job
from lwq_app.core.jobs.child_runner import run_in_child
from lwq_app.core.jobs.errors import (
    InputError,
    InternalError,
    JobFailed,
    ModelFileError,
    PlanError,
    one_line,
    shown,
)
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.quant_plan import load_plan, plan_from_preset


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    c = tmp_path / "cache"
    monkeypatch.setenv("LWQ_CACHE_DIR", str(c))
    return c


def _logs(cache: Path) -> list[Path]:
    return sorted((cache / "logs").glob("lwq-*.log")) if (cache / "logs").exists() else []


def _child_temp_logs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("lwq-child-")}


# --- escaping ------------------------------------------------------------------------------


def test_values_are_escaped_into_one_line() -> None:
    assert shown("a\nb\x1b[31m\r\u2028") == "a\\nb\\x1b[31m\\r\\u2028"
    assert one_line("line 1\nline 2") == "line 1\\nline 2"
    assert "digits" in shown(10**5000) and len(shown("x" * 10_000)) == 200
    assert shown([[[]]]) == "a list of 1 item(s)"


# --- the job boundary ----------------------------------------------------------------------


def test_a_bug_in_a_job_becomes_internal_error_with_a_log(cache: Path) -> None:
    @public_job("demo job")
    def job() -> None:
        {}["missing"]

    with pytest.raises(InternalError) as e:
        job()
    msg = str(e.value)
    assert "internal error in demo job" in msg and "KeyError" in msg and "a bug in lwq" in msg
    (log,) = _logs(cache)
    assert str(log) in msg and "Traceback" in log.read_text() and "\n" not in msg


def test_project_errors_and_interrupts_pass_the_boundary_unchanged(cache: Path) -> None:
    @public_job("demo")
    def job(exc: BaseException) -> None:
        raise exc

    err = PlanError("tensor x: bad")
    with pytest.raises(PlanError) as e:
        job(err)
    assert e.value is err
    with pytest.raises(KeyboardInterrupt):
        job(KeyboardInterrupt())
    assert _logs(cache) == []


# --- the child process ---------------------------------------------------------------------


def test_native_abort_names_job_file_and_tensor_and_keeps_noise_in_the_log(
    cache: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(JobFailed) as e:
        run_in_child("childjobs:native_abort", {}, job="quantize", subject="/m/model.gguf",
                     item_kind="tensor")  # fmt: skip
    msg = str(e.value)
    assert "quantize on /m/model.gguf at tensor blk.3.ffn_up.weight" in msg
    assert "crashed (SIGABRT)" in msg
    assert "GGML_ASSERT(grid_index >= 0) failed" in msg and "\n" not in msg
    (log,) = _logs(cache)
    assert str(log) in msg
    text = log.read_text()
    assert "GGML_ASSERT" in text and "#0  0x" in text and "[New LWP" in text
    out = capfd.readouterr()
    assert "GGML_ASSERT" not in out.err and "LWP" not in out.err  # nothing on the terminal


def test_segfault_in_child_is_named_and_logged(cache: Path) -> None:
    with pytest.raises(
        JobFailed, match=r"segfault at about to crash: native job crashed \(SIGSEGV\)"
    ):
        run_in_child("childjobs:segfault", {})
    (log,) = _logs(cache)
    assert "Fatal Python error" in log.read_text()  # faulthandler's dump went to the log


def test_python_bug_in_child_is_internal_error(cache: Path) -> None:
    with pytest.raises(InternalError) as e:
        run_in_child("childjobs:python_bug", {}, job="eval")
    msg = str(e.value)
    assert "internal error in eval" in msg and "KeyError" in msg and "in the child" in msg
    (log,) = _logs(cache)
    assert str(log) in msg and "Traceback" in log.read_text()


def test_a_child_that_succeeds_or_reports_an_error_leaves_no_log(cache: Path) -> None:
    before = _child_temp_logs()
    run_in_child("childjobs:count", {"n": 2})
    with pytest.raises(PlanError):
        run_in_child("childjobs:bad_plan", {})
    assert _logs(cache) == [] and _child_temp_logs() <= before


# --- llama.cpp's own reason ----------------------------------------------------------------


def _truncated(tmp_path: Path) -> Path:
    src = fixtures.synthetic("gqa4-untied")
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return bad


def test_llama_cpp_load_failure_passes_its_reason_on(tmp_path: Path) -> None:
    from lwq_app.core.engine import LlamaSession

    bad = _truncated(tmp_path)
    with pytest.raises(ModelFileError) as e:
        LlamaSession(bad, n_ctx=64)
    msg = str(e.value)
    assert str(bad) in msg and "could not load the model: tensor '" in msg and "\n" not in msg
    assert "not within the file bounds" in msg


def test_llama_cpp_load_failure_of_garbage(tmp_path: Path) -> None:
    from lwq_app.core.engine import LlamaSession

    bad = tmp_path / "garbage.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    with pytest.raises(ModelFileError, match=r"garbage\.gguf: llama\.cpp could not load the "
                       r"model: this GGUF file is version 50462976 but"):  # fmt: skip
        LlamaSession(bad, n_ctx=64)


# --- the CLI -------------------------------------------------------------------------------


def _lwq_bug(tmp_path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, in a subprocess, with a bug planted in ``lwq plan``."""
    code = (
        "import sys\n"
        "from lwq_app.cli import plan_commands\n"
        "plan_commands.cmd_plan = lambda a: 1 // 0\n"
        "from lwq_app.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "LWQ_CACHE_DIR": str(cache)}
    model = str(fixtures.synthetic("gqa4-untied"))
    return subprocess.run(
        [sys.executable, "-c", code, "plan", model, "--preset", "Q4_K_M"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_cli_bug_is_one_line_and_a_log_file(tmp_path: Path, cache: Path) -> None:
    r = _lwq_bug(tmp_path, cache)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("lwq: internal error in plan (ZeroDivisionError")
    (log,) = _logs(cache)
    assert str(log) in lines[0] and "Traceback" in log.read_text()


def test_cli_never_echoes_a_newline_raw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = str(fixtures.synthetic("gqa4-untied"))
    assert main(["plan", model, "--preset", "Q4_K\nM\x1b[2J"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "Q4_K\\nM\\x1b[2J" in err


# --- hostile plan JSON ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_and_plan() -> tuple[Path, dict]:
    model = fixtures.synthetic("gqa4-untied")
    return model, plan_from_preset(open_model(model), "Q4_K_M").to_dict()


def _plan_cases(plan: dict) -> dict[str, tuple[str, str]]:
    """name -> (file text, needle of the PlanError)."""
    good = json.dumps(plan, indent=1)
    first = next(iter(plan["tensors"]))

    def edit(**kw: object) -> str:
        return json.dumps({**plan, **kw}, indent=1)

    def tensors(**kw: object) -> str:
        return edit(tensors={**plan["tensors"], **kw})

    return {
        "nested_1000": (good[:-2] + ', "note": ' + "[" * 1000 + "]" * 1000 + "}", "nested|note"),
        "nested_100k": ("[" * 100_000 + "]" * 100_000, "nested|not an lwq plan"),
        "digits_5000": (good.replace('"version": 1', '"version": ' + "7" * 5000), ":3: invalid plan: a number with too many digits"),
        "version_true": (edit(version=True), "plan version True"),
        "version_float": (edit(version=1.0), "plan version 1.0"),
        "tensors_list": (edit(tensors=[1, 2]), '"tensors" must map'),
        "type_int": (tensors(**{first: 4}), f"tensor {first}: the type must be a string"),
        "type_nested": (tensors(**{first: [[["Q4_K"]]]}), f"tensor {first}: the type must be"),
        "unknown_type": (tensors(**{first: "Q9_K"}), "unknown tensor type 'Q9_K'"),
        "unknown_tensor": (tensors(**{"blk.99.attn\nq": "Q4_K"}), r"blk.99.attn\nq"),
        "model_str": (edit(model="x"), '"model" must be an object'),
        "arch_int": (edit(model={**plan["model"], "architecture": 5}), "model.architecture"),
        "other_arch": (edit(model={**plan["model"], "architecture": "phi3"}), "architecture 'phi3'"),
        "other_model": (edit(model={**plan["model"], "fingerprint": "0123456789abcdef"}), "another model"),
        "preset_int": (edit(preset=4), '"preset" must be a string'),
        "imatrix_str": (edit(with_imatrix="yes"), '"with_imatrix" must be true or false'),
        "note_dict": (edit(note={"a": 1}), '"note" must be a string'),
        "not_utf8": ('{"format": "\xff"}', "not UTF-8"),
        "huge_float": (edit(version=1e999), "plan version inf"),
    }  # fmt: skip


PLAN_CASES = list(_plan_cases({"model": {}, "tensors": {"a": "b"}}))


@pytest.mark.parametrize("case", PLAN_CASES)
def test_hostile_plan_json_is_a_plan_error(
    case: str, model_and_plan: tuple[Path, dict], tmp_path: Path
) -> None:
    model, plan = model_and_plan
    text, needle = _plan_cases(plan)[case]
    f = tmp_path / "plan.json"
    if case == "not_utf8":
        f.write_bytes(text.encode("latin-1"))
    else:
        f.write_text(text)
    with pytest.raises(PlanError) as e:
        load_plan(f, open_model(model))
    msg = str(e.value)
    assert str(f) in msg and "\n" not in msg
    import re

    assert re.search(needle, msg) or needle in msg, msg


def test_another_models_plan_with_other_names(
    model_and_plan: tuple[Path, dict], tmp_path: Path
) -> None:
    _, plan = model_and_plan
    f = tmp_path / "plan.json"
    f.write_text(json.dumps(plan))
    with pytest.raises(PlanError, match=r"plan\.json: names tensor\(s\) not in"):
        load_plan(f, open_model(fixtures.synthetic("moe8")))


def test_hostile_plan_through_the_cli(
    model_and_plan: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = model_and_plan
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    before = sorted(os.listdir(tmp_path))
    assert main(["quantize", str(model), "--plan", str(f), "-o", str(tmp_path / "q.gguf")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lwq: error: ") and str(f) in err
    assert sorted(os.listdir(tmp_path)) == before


def test_input_error_is_not_internal() -> None:
    assert not issubclass(InternalError, InputError)
