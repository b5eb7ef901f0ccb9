"""The project's one evaluation setting: what every variant is measured under.

Variants are only comparable when they were measured the same way: the same text, context
and chunk count for PPL/KLD, the same task files and counts, the same bench tests and
threads. The project keeps one ``EvalSettings`` (``project.json`` field ``eval_settings``);
the queue builds its requests from it, and the results table shows a stored record as
comparable only when ``matches_*`` says it was measured under it (others are flagged).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..evaluate.bench import BenchRecord, BenchRequest
from ..evaluate.multiple_choice import BENCHMARKS, TaskResult, TasksRequest, benchmark_kind
from ..evaluate.perplexity import EvalRequest, KldResult, PerplexityResult
from ..jobs.errors import InputError, shown

#: chunks of the text an app evaluation uses by default (all 512-token chunks of the bundled
#: excerpt; the full wikitext-2 test set has ~560, llama-perplexity's usual figure)
DEFAULT_CHUNKS = 40
DEFAULT_TASKS = 200
DEFAULT_TASK_CTX = 768


@dataclass(frozen=True)
class TaskSetting:
    """One benchmark of the setting: its name (a ``BENCHMARKS`` key), task file and count."""

    name: str
    path: Path
    n_tasks: int = DEFAULT_TASKS

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "n_tasks": self.n_tasks}


@dataclass(frozen=True)
class EvalSettings:
    """How the project measures a variant: PPL/KLD on ``text`` (``n_ctx`` tokens a chunk,
    ``n_chunks`` chunks, None = all), each of ``tasks``, and the bench ``bench_tests``
    ((n_prompt, n_gen) pairs) at ``bench_depths`` with ``bench_repetitions`` runs. ``threads``
    and ``gpu_layers`` (0 = llama.cpp's defaults / CPU) apply to every job."""

    text: Path
    n_ctx: int = 512
    n_chunks: int | None = DEFAULT_CHUNKS
    tasks: tuple[TaskSetting, ...] = ()
    task_ctx: int = DEFAULT_TASK_CTX
    bench_tests: tuple[tuple[int, int], ...] = ((512, 0), (0, 128))
    bench_repetitions: int = 5
    bench_depths: tuple[int, ...] = (0,)
    threads: int = 0
    gpu_layers: int = 0

    # --- the requests the queue runs -------------------------------------------------
    def eval_request(self, model: Path, base: Path | None) -> EvalRequest:
        """PPL of ``model`` (and KLD against ``base`` when given) under this setting."""
        return EvalRequest(
            model=Path(model),
            text=self.text,
            base=None if base is None else Path(base),
            n_ctx=self.n_ctx,
            n_chunks=self.n_chunks,
            threads=self.threads,
            gpu_layers=self.gpu_layers,
        )

    def task_requests(self, model: Path) -> tuple[TasksRequest, ...]:
        """One request per benchmark of the setting."""
        return tuple(
            TasksRequest(
                model=Path(model),
                kind=benchmark_kind(t.name),
                path=t.path,
                name=t.name,
                n_tasks=t.n_tasks,
                n_ctx=self.task_ctx,
                threads=self.threads,
                gpu_layers=self.gpu_layers,
            )
            for t in self.tasks
        )

    def bench_request(self, model: Path) -> BenchRequest:
        """The bench at normal priority, even in the app (which nices its other children): a
        niced bench under a competing load measured tg128 0.38 t/s against llama-bench's 13."""
        return BenchRequest(
            model=Path(model),
            tests=self.bench_tests,
            repetitions=self.bench_repetitions,
            threads=self.threads,
            gpu_layers=self.gpu_layers,
            depths=self.bench_depths,
            normal_priority=True,
        )

    # --- whether a stored record was measured under it ------------------------------
    def matches_eval(self, result: PerplexityResult | KldResult, text_sha256: str) -> bool:
        """``result`` is of this setting's text (``text_sha256``: its digest), context and
        chunk count (with ``n_chunks`` None: any count)."""
        ppl = result.perplexity if isinstance(result, KldResult) else result
        return (
            ppl.text_sha256 == text_sha256
            and ppl.n_ctx == self.n_ctx
            and (self.n_chunks is None or ppl.n_chunks == self.n_chunks)
        )

    def matches_task(self, result: TaskResult, file_sha256: str, digests: dict[str, str]) -> bool:
        """``result`` is one of the setting's benchmarks, on the same task file (``digests``:
        benchmark name -> sha256 of the setting's file) and count."""
        t = next((t for t in self.tasks if t.name == result.name), None)
        return (
            t is not None
            and digests.get(t.name) == file_sha256
            and (t.n_tasks == 0 or result.n_tasks == t.n_tasks)
        )

    def matches_bench(self, record: BenchRecord) -> bool:
        """``record`` is one of the setting's tests and depths with its GPU layers (and its
        threads, when the setting names a count)."""
        return (
            (record.n_prompt, record.n_gen) in self.bench_tests
            and record.n_depth in self.bench_depths
            and record.n_gpu_layers == self.gpu_layers
            and (self.threads == 0 or record.n_threads == self.threads)
        )

    # --- project.json ---------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "text": str(self.text),
            "n_ctx": self.n_ctx,
            "n_chunks": self.n_chunks,
            "tasks": [t.to_json() for t in self.tasks],
            "task_ctx": self.task_ctx,
            "bench_tests": [list(t) for t in self.bench_tests],
            "bench_repetitions": self.bench_repetitions,
            "bench_depths": list(self.bench_depths),
            "threads": self.threads,
            "gpu_layers": self.gpu_layers,
        }

    @staticmethod
    def from_json(d: object, where: str = "eval_settings") -> EvalSettings:
        """Every field checked; ``InputError`` naming ``where`` and the field."""
        if not isinstance(d, dict):
            raise InputError(f"{where}: must be an object, not {shown(d, 40)}")
        unknown = sorted(set(d) - {f.name for f in fields(EvalSettings)})
        if unknown:
            raise InputError(f"{where}: unknown field {shown(unknown[0], 40)!r}")
        if not isinstance(d.get("text"), str) or not d["text"]:
            raise InputError(f"{where}: field 'text' must be a file path")

        def count(key: str, low: int, default: int | None, *, none: bool = False) -> Any:
            v = d.get(key, default)
            if v is None and none:
                return None
            if type(v) is not int or v < low:
                raise InputError(
                    f"{where}: field {key!r} must be an integer ≥ {low}, not {shown(v, 40)}"
                )
            return v

        def pairs(key: str, default: Any) -> tuple[tuple[int, int], ...]:
            v = d.get(key, default)
            ok = (
                isinstance(v, list)
                and v
                and all(
                    isinstance(x, list)
                    and len(x) == 2
                    and all(type(n) is int and n >= 0 for n in x)
                    and sum(x) > 0
                    for x in v
                )
            )
            if not ok:
                raise InputError(f"{where}: field {key!r} must be a list of [n_prompt, n_gen]")
            return tuple((int(x[0]), int(x[1])) for x in v)

        depths = d.get("bench_depths", [0])
        if (
            not isinstance(depths, list)
            or not depths
            or any(type(x) is not int or x < 0 for x in depths)
        ):
            raise InputError(f"{where}: field 'bench_depths' must be a list of token counts")
        raw_tasks = d.get("tasks", [])
        if not isinstance(raw_tasks, list):
            raise InputError(f"{where}: field 'tasks' must be a list")
        tasks = []
        for i, t in enumerate(raw_tasks):
            w = f"{where}: field 'tasks' item {i + 1}"
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise InputError(f"{w}: must be an object with a 'name'")
            if t["name"] not in BENCHMARKS:
                raise InputError(f"{w}: unknown benchmark {shown(t['name'], 40)!r}")
            if not isinstance(t.get("path"), str) or not t["path"]:
                raise InputError(f"{w}: field 'path' must be a file path")
            n = t.get("n_tasks", DEFAULT_TASKS)
            if type(n) is not int or n < 0:
                raise InputError(f"{w}: field 'n_tasks' must be an integer ≥ 0")
            tasks.append(TaskSetting(t["name"], Path(t["path"]), n))
        return EvalSettings(
            text=Path(d["text"]),
            n_ctx=count("n_ctx", 8, 512),
            n_chunks=count("n_chunks", 1, DEFAULT_CHUNKS, none=True),
            tasks=tuple(tasks),
            task_ctx=count("task_ctx", 8, DEFAULT_TASK_CTX),
            bench_tests=pairs("bench_tests", [[512, 0], [0, 128]]),
            bench_repetitions=count("bench_repetitions", 1, 5),
            bench_depths=tuple(depths),
            threads=count("threads", 0, 0),
            gpu_layers=count("gpu_layers", 0, 0),
        )
