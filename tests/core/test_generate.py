"""The greedy-completion job (``make run``'s sanity check): runs in a child, same text as the
engine, progress, cancel and bad inputs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lwq_app.core.evaluate.generate import GenerateRequest, generate
from lwq_app.core.jobs.errors import Cancelled, InputError, ModelFileError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress

PROMPT = "The capital of France is"


def test_generate_matches_the_engine_and_reports_load_then_eval(smollm2: Path) -> None:
    from lwq_app.core.engine import greedy_completion

    seen: list[Progress] = []
    result = generate(GenerateRequest(smollm2, PROMPT, n_tokens=12), progress=seen.append)
    assert result.text and result.text == greedy_completion(str(smollm2), PROMPT, 12)
    assert seen[0].phase is Phase.LOAD and seen[-1].phase is Phase.EVAL
    overall = [p.overall for p in seen]
    assert overall == sorted(overall) and overall[-1] == 1.0  # type: ignore[type-var]
    assert all(p.item == smollm2.name for p in seen)


def test_generate_keeps_llama_cpp_out_of_the_caller(smollm2: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from lwq_app.core.evaluate.generate import GenerateRequest, generate\n"
        f"r = generate(GenerateRequest(Path({str(smollm2)!r}), 'Hello', n_tokens=2))\n"
        "assert r.text\n"
        "sys.exit(1 if 'llama_cpp' in sys.modules else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_cancelled_token_stops_it_on_entry(smollm2: Path) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        generate(GenerateRequest(smollm2, PROMPT), cancel=token)


@pytest.mark.parametrize("phase", [Phase.LOAD, Phase.EVAL])
def test_cancel_after_the_first_event_of_each_phase(smollm2: Path, phase: Phase) -> None:
    token = CancelToken()
    at: list[float] = []

    def on_progress(p: Progress) -> None:
        if p.phase is phase and not at:
            at.append(time.monotonic())
            threading.Thread(target=token.cancel).start()

    with pytest.raises(Cancelled):
        generate(GenerateRequest(smollm2, PROMPT, n_tokens=200), progress=on_progress,
                 cancel=token)  # fmt: skip
    assert at and time.monotonic() - at[0] < 1.0


def _bad_models(tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "notgguf.gguf").write_bytes(b"PK\x03\x04 not a model at all" * 10)
    (tmp / "truncated.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    return {
        "missing": tmp / "missing.gguf",
        "not-gguf": tmp / "notgguf.gguf",
        "truncated": tmp / "truncated.gguf",
        "folder": tmp,
    }


@pytest.mark.parametrize("case", ["missing", "not-gguf", "truncated", "folder"])
def test_bad_model_files_name_the_file(tmp_path: Path, case: str) -> None:
    path = _bad_models(tmp_path / "bad")[case]
    with pytest.raises(ModelFileError, match=str(path.name)):
        generate(GenerateRequest(path, PROMPT))


@pytest.mark.parametrize(("field", "value"), [("n_tokens", 0), ("threads", -1)])
def test_bad_options_name_the_option(smollm2: Path, field: str, value: int) -> None:
    kwargs = {"n_tokens": 4, "threads": 0, field: value}
    with pytest.raises(InputError, match=field):
        generate(GenerateRequest(smollm2, PROMPT, **kwargs))
