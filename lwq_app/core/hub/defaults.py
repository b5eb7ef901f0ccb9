"""What lwq takes from the Hub when the user names no file: the default evaluation text and
the task file of a benchmark given as ``hub`` (``lwq tasks --arc hub``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..evaluate.multiple_choice import BENCHMARKS
from ..evaluate.task_files import TaskKind
from ..jobs.errors import InputError
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress
from ..jobs.resources import WIKITEXT_EXCERPT
from ..results.eval_settings import EvalSettings
from .datasets import cached, dataset, fetch


@dataclass(frozen=True)
class EvalText:
    """The text an evaluation runs on when none is given, and what it is, in words."""

    path: Path
    source: str  # e.g. "the full wikitext-2 test set fetched from the Hub (PATH)"
    full: bool  # the whole wikitext-2 test set (else the bundled excerpt)


def default_eval_text() -> EvalText:
    """The full wikitext-2 test set if ``lwq fetch wikitext`` got it, else the bundled
    excerpt (never touches the network)."""
    full = cached("wikitext")
    if full is not None:
        return EvalText(full, f"the full wikitext-2 test set fetched from the Hub ({full})", True)
    return EvalText(
        WIKITEXT_EXCERPT,
        f"the bundled wikitext-2 test excerpt ({WIKITEXT_EXCERPT.name}); "
        "`lwq fetch wikitext` gets the full test set",
        False,
    )


#: the ``lwq fetch`` dataset each benchmark takes from the Hub (``--OPTION hub``)
HUB_TASKS: dict[str, str] = {
    "hellaswag": "hellaswag",
    "winogrande": "winogrande",
    "arc": "arc-challenge",
    "mmlu": "mmlu",
    "truthfulqa": "truthfulqa",
}


@dataclass(frozen=True)
class TaskFile:
    """A benchmark's task file and its format."""

    benchmark: str
    path: Path
    kind: TaskKind


def hub_task_file(
    benchmark: str,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> TaskFile:
    """The benchmark's task file from the Hub, fetched if need be; its format is that of the
    fetched file (HellaSwag's is a multiple-choice file, not the 6-line text)."""
    check(cancel)
    if benchmark not in HUB_TASKS:
        raise InputError(
            f"no Hub dataset for benchmark {benchmark!r}: choose from {', '.join(BENCHMARKS)}"
        )
    name = HUB_TASKS[benchmark]
    path = fetch(name, progress=progress, cancel=cancel)
    kind = dataset(name).task
    assert kind is not None, name
    return TaskFile(benchmark, path, kind)


def default_eval_settings() -> EvalSettings:
    """The evaluation setting a project starts with: the default text (``default_eval_text``)
    in 512-token chunks, ``DEFAULT_CHUNKS`` of them, no task files (the user adds them; a
    missing one can be fetched), llama-bench's pp512 and tg128 with 5 repetitions."""
    return EvalSettings(text=default_eval_text().path)
