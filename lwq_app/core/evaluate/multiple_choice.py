"""Multiple-choice benchmarks scored exactly as llama-perplexity scores them.

Every candidate text is tokenized with BOS handling as ``common_tokenize(..., true)``; the
tokens all candidates share are decoded once for all of their sequences (one KV cache,
``n_parallel`` = 4 sequences as llama-perplexity), and each candidate's score is the mean
log-probability of its own tokens. HellaSwag and multiple choice (ARC/MMLU/TruthfulQA)
count from the first differing token; WinoGrande, like llama.cpp, scores only the words
after the blank when both continuations are longer than 3 tokens (keeping llama.cpp's
index arithmetic, its FIXME included, so scores match). Tasks are packed into one decode
while they fit the context. Runs in a child process with per-batch progress.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import LlamaSession
from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import InputError, ModelFileError
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from ..modelfile.inventory import open_model
from .task_files import (
    ChoiceTask,
    TaskKind,
    load_hellaswag,
    load_multiple_choice,
    load_winogrande,
)

DEFAULT_TASKS = 750
DEFAULT_CTX = 768
N_PARALLEL = 4  # llama-perplexity: n_parallel = max(4, -np) for the task scorers
K_MIN_TRAILING = 3  # winogrande: skip the choice word when both endings are longer


#: the benchmarks ``lwq tasks`` scores, and the task-file format each one comes in
BENCHMARKS: dict[str, TaskKind] = {
    "hellaswag": TaskKind.HELLASWAG,
    "winogrande": TaskKind.WINOGRANDE,
    "arc": TaskKind.MULTIPLE_CHOICE,
    "mmlu": TaskKind.MULTIPLE_CHOICE,
    "truthfulqa": TaskKind.MULTIPLE_CHOICE,
}


def benchmark_kind(name: str) -> TaskKind:
    """The task-file format of benchmark ``name`` (a ``BENCHMARKS`` key)."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise InputError(
            f"unknown benchmark {name!r}: choose from {', '.join(BENCHMARKS)}"
        ) from None


@dataclass(frozen=True)
class TasksRequest:
    """``lwq tasks`` for one benchmark: score ``model`` on the tasks of ``path`` (a file in
    the ``kind`` format), the first/sampled ``n_tasks`` of them (0 = all)."""

    model: Path
    kind: TaskKind
    path: Path
    name: str = ""  # the benchmark's name in results ("" = the kind's)
    n_tasks: int = DEFAULT_TASKS
    n_ctx: int = DEFAULT_CTX
    threads: int = 0
    gpu_layers: int = 0


@dataclass(frozen=True)
class TaskResult:
    """Accuracy of one benchmark: ``score`` and ``stderr`` in percent."""

    name: str
    file: str
    n_tasks: int
    n_correct: int
    score: float
    stderr: float
    random_chance: float
    correct: tuple[bool, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The result as ``lwq tasks --json`` prints it: every field but ``correct``."""
        d = asdict(self)
        d.pop("correct")
        return d


LOADERS = {
    TaskKind.HELLASWAG: load_hellaswag,
    TaskKind.WINOGRANDE: load_winogrande,
    TaskKind.MULTIPLE_CHOICE: load_multiple_choice,
}


@public_job("tasks")
def run_tasks(
    request: TasksRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> TaskResult:
    """Score the model on the benchmark's tasks (a child process: ``Phase.LOAD``, then
    ``Phase.TASKS`` per decoded group of tasks)."""
    check(cancel)
    r = request
    if r.n_ctx < 16:
        raise InputError(f"context size {r.n_ctx} is too small (at least 16)")
    if r.n_tasks < 0:
        raise InputError(f"task count {r.n_tasks} is negative (0 = all)")
    info = open_model(r.model)
    if info.n_vocab <= 0:
        raise ModelFileError(f"{r.model}: the model has no vocabulary")
    tasks = LOADERS[r.kind](Path(r.path), r.n_tasks)
    t0 = time.monotonic()
    correct: tuple[bool, ...] = run_in_child(
        "lwq_app.core.evaluate.multiple_choice:child_tasks",
        {
            "model": str(r.model),
            "tasks": tasks,
            "n_ctx": r.n_ctx,
            "threads": r.threads,
            "gpu_layers": r.gpu_layers,
        },
        progress=progress,
        cancel=cancel,
        job="tasks",
        subject=r.model,
    )
    n, k = len(correct), sum(correct)
    p = k / n
    n_answers = sum(len(t.texts) for t in tasks)
    chance = n / n_answers
    return TaskResult(
        name=r.name or r.kind.value,
        file=str(r.path),
        n_tasks=n,
        n_correct=k,
        score=100 * p,
        stderr=100 * math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0,
        random_chance=100 * chance,
        correct=correct,
        seconds=time.monotonic() - t0,
    )


# --- child side -------------------------------------------------------------------------------


@dataclass
class _Prepared:
    task: ChoiceTask
    seqs: list[np.ndarray]
    prefix: int
    required: int
    n_base: tuple[int, ...] = ()


def _prepare(s: LlamaSession, t: ChoiceTask) -> _Prepared:
    seqs = [s.tokenize(x, add_special=True) for x in t.texts]
    n = min(len(q) for q in seqs)
    prefix = 0
    while prefix < n and all(q[prefix] == seqs[0][prefix] for q in seqs[1:]):
        prefix += 1
    if prefix == 0:
        raise InputError(f"{t.source}: candidates share no tokens (empty context?)")
    if any(len(q) <= prefix for q in seqs):
        raise InputError(f"{t.source}: a candidate adds no tokens to the shared context")
    required = prefix + sum(len(q) - prefix for q in seqs)
    bases = tuple(len(s.tokenize(b, add_special=True)) for b in t.bases)
    return _Prepared(t, seqs, prefix, required, bases)


def child_tasks(
    ctx: ChildContext,
    *,
    model: str,
    tasks: list[ChoiceTask],
    n_ctx: int,
    threads: int,
    gpu_layers: int,
) -> tuple[bool, ...]:
    n_seq = max(N_PARALLEL, max(len(t.texts) for t in tasks))
    ctx.progress(Progress(Phase.LOAD, 0, 1, Path(model).name))
    with LlamaSession(
        model,
        n_ctx=n_ctx,
        n_seq=n_seq,
        n_batch=min(2048, n_ctx * n_seq),
        threads=threads,
        gpu_layers=gpu_layers,
        unified_kv=True,
    ) as s:
        prepared = [_prepare(s, t) for t in tasks]
        total_ctx = n_ctx * n_seq
        for p in prepared:
            if p.required > total_ctx:
                raise InputError(
                    f"{p.task.source}: task needs {p.required} tokens, more than the "
                    f"context of {total_ctx} ({n_seq} × {n_ctx}); raise --ctx"
                )
        results: list[bool] = []
        ctx.progress(Progress(Phase.TASKS, 0, len(prepared), "task 0"))
        i0 = 0
        while i0 < len(prepared):
            group, n_cur, s0 = [], 0, 0
            for p in prepared[i0:]:
                k = len(p.seqs)
                if n_cur + p.required > total_ctx or s0 + k > n_seq:
                    break
                group.append(p)
                n_cur += p.required
                s0 += k
            results.extend(_score_group(s, group))
            i0 += len(group)
            ctx.progress(Progress(Phase.TASKS, i0, len(prepared), f"task {i0}"))
    return tuple(results)


def _score_group(s: LlamaSession, group: list[_Prepared]) -> list[bool]:
    """Decode the tasks of ``group`` together and judge each one."""
    toks: list[int] = []
    pos: list[int] = []
    seq: list[list[int] | int] = []
    out: list[bool] = []
    starts: list[int] = []  # first output row of each task
    n_out = 0
    s0 = 0
    for p in group:
        k = len(p.seqs)
        wino = p.task.kind == TaskKind.WINOGRANDE
        starts.append(n_out)
        for i in range(p.prefix):
            toks.append(int(p.seqs[0][i]))
            pos.append(i)
            seq.append(list(range(s0, s0 + k)))
            out.append(i == p.prefix - 1)
        n_out += 1
        for j, q in enumerate(p.seqs):
            for i in range(p.prefix, len(q)):
                want = wino or i < len(q) - 1
                toks.append(int(q[i]))
                pos.append(i)
                seq.append(s0 + j)
                out.append(want)
                n_out += want
        s0 += k
    logits = _decode_all(s, toks, pos, seq, out)
    lse = _lse(logits)
    verdicts = []
    for p, start in zip(group, starts, strict=True):
        rows = logits[start:]
        lrow = lse[start:]
        if p.task.kind == TaskKind.WINOGRANDE:
            scores = _winogrande_scores(p, rows, lrow)
            best = 0 if scores[0] > scores[1] else 1
        else:
            scores = _ending_scores(p, rows, lrow)
            best = int(np.argmax(scores))  # first maximum, as llama.cpp's strict '>'
        verdicts.append(p.task.labels[best] == 1)
    return verdicts


def _decode_all(
    s: LlamaSession, toks: list[int], pos: list[int], seq: list[list[int] | int], out: list[bool]
) -> np.ndarray:
    """``decode_helper``: decode in n_batch pieces from a clear cache, stack the outputs."""
    s.clear()
    n_batch = s.n_batch
    parts = []
    for i in range(0, len(toks), n_batch):
        sl = slice(i, i + n_batch)
        n = s.decode(toks[sl], pos[sl], seq[sl], out[sl])
        if n:
            parts.append(s.logits(n))
    return np.concatenate(parts)


def _lse(logits: np.ndarray) -> np.ndarray:
    mx = logits.max(axis=1)
    return np.asarray(mx + np.log(np.exp(logits - mx[:, None]).sum(axis=1)))


def _ending_scores(p: _Prepared, rows: np.ndarray, lse: np.ndarray) -> list[float]:
    """HellaSwag / multiple choice: mean log-prob of each candidate's tokens after the prefix."""
    scores = []
    li = 1  # row 0: last prefix token, predicts every candidate's first own token
    for q in p.seqs:
        total = float(rows[0, q[p.prefix]] - lse[0])
        count = 1
        for j in range(p.prefix, len(q) - 1):
            total += float(rows[li, q[j + 1]] - lse[li])
            li += 1
            count += 1
        scores.append(total / count)
    return scores


def _winogrande_scores(p: _Prepared, rows: np.ndarray, lse: np.ndarray) -> list[float]:
    """llama.cpp's winogrande_score index arithmetic, literally."""
    q0, q1 = p.seqs
    cp = p.prefix
    skip = len(q0) - cp > K_MIN_TRAILING and len(q1) - cp > K_MIN_TRAILING
    out = []
    for s, q in enumerate((q0, q1)):
        n_base = p.n_base[s] if skip else cp
        last = 1 if len(q) - n_base > 1 else 0
        li = n_base - cp if s == 0 else len(q0) - cp + n_base - cp
        total = 0.0
        for j in range(n_base - 1, len(q) - 1 - last):
            total += float(rows[li, q[j + 1]] - lse[li])
            li += 1
        out.append(total / (len(q) - n_base - last))
    return out
