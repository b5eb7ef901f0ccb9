"""Greedy completion of a prompt: the "does it still talk sense" check of ``make run``.

The job runs in a child process (``run_in_child``), so llama.cpp never loads in the caller,
cancel kills a blocking decode and a native crash becomes a ``JobFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import InputError
from ..jobs.progress import CancelToken, Phase, Phases, Progress, ProgressSink, check, no_progress
from ..modelfile.gguf_header import read_header


@dataclass(frozen=True)
class GenerateRequest:
    """Complete ``prompt`` with ``n_tokens`` greedy (temperature 0) tokens of ``model``."""

    model: Path
    prompt: str
    n_tokens: int = 24
    threads: int = 0


@dataclass(frozen=True)
class GenerateResult:
    #: the completion only (the prompt is not repeated)
    text: str


@public_job("generate")
def generate(
    request: GenerateRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> GenerateResult:
    """Greedy completion of ``request.prompt``; phases LOAD then EVAL (one event per step).

    Raises ``ModelFileError`` naming the file for a missing, non-GGUF or truncated model,
    ``InputError`` for a bad token count, ``Cancelled`` when ``cancel`` is set."""
    check(cancel)
    if request.n_tokens < 1:
        raise InputError(f"n_tokens must be at least 1 (got {request.n_tokens})")
    if request.threads < 0:
        raise InputError(f"threads must be >= 0 (got {request.threads})")
    model = Path(request.model)
    read_header(model)  # ModelFileError naming the file before a child is started
    phases = Phases(progress, [(Phase.LOAD, 1), (Phase.EVAL, 1)])

    def route(p: Progress) -> None:
        phases.sink(p.phase)(p)

    text = run_in_child(
        f"{__name__}:_generate_in_child",
        {
            "model": str(model),
            "prompt": request.prompt,
            "n_tokens": request.n_tokens,
            "threads": request.threads,
        },
        progress=route,
        cancel=cancel,
        job="generate",
        subject=model,
    )
    return GenerateResult(str(text))


def _generate_in_child(
    ctx: ChildContext, *, model: str, prompt: str, n_tokens: int, threads: int
) -> str:
    from ..engine import greedy_completion

    name = Path(model).name
    ctx.progress(Progress(Phase.LOAD, 0, 1, name))

    def loaded() -> None:
        ctx.progress(Progress(Phase.LOAD, 1, 1, name))
        ctx.progress(Progress(Phase.EVAL, 0, 1, name))

    text = greedy_completion(model, prompt, n_tokens, threads, on_loaded=loaded)
    ctx.progress(Progress(Phase.EVAL, 1, 1, name))
    return text
