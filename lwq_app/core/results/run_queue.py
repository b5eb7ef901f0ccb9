"""The run queue as data: what the app's Run step runs, in order, and each job's state.

A queue is a tuple of frozen ``QueueEntry`` rows; every change is a pure function here that
returns the new tuple (the app keeps it, the journal writes it: ``journal.py``). An entry's
``spec`` is plain JSON (paths as text, the plan as its dict), so the journal can hold it and
a restarted app can run it again. "Quantize & check" is a *chain*: quantize → PPL/KLD
against the F16 base → each benchmark of the project's setting → bench, each step ``after``
the one before it. A step runs only once its predecessor is DONE; when one fails, is
cancelled or was interrupted, the chain's later steps are SKIPPED, so none ever runs on a
file that was never written. The job itself is ``run_entry.run_entry``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from ..jobs.errors import InputError, shown
from ..plan.quant_plan import QuantPlan
from .eval_settings import EvalSettings
from .store import results_path


class JobKind(str, Enum):
    """What an entry runs."""

    QUANTIZE = "quantize"
    EVAL = "eval"  # PPL, and KLD against the project's F16 base
    TASKS = "tasks"  # one multiple-choice benchmark of the setting
    BENCH = "bench"


class JobState(str, Enum):
    """An entry's state; the only place these are defined."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    #: the user stopped it (Cancel, or quit-and-cancel)
    CANCELLED = "cancelled"
    #: the process died while it ran (kill, crash, power loss): found in the journal later
    INTERRUPTED = "interrupted"
    #: an earlier step of its chain did not finish; it never ran
    SKIPPED = "skipped"


#: states of an entry that will not change unless it is re-queued
ENDED = frozenset(
    {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED, JobState.SKIPPED}
)
#: states an entry can be re-queued from
REQUEUEABLE = frozenset(
    {JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED, JobState.SKIPPED}
)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class QueueEntry:
    """One job of the queue. ``spec`` says what to run, as JSON (see ``run_entry``);
    ``chain``/``after``: the chain it belongs to and the entry it waits for; ``error``: why it
    failed or was skipped; ``message``: what it found (a one-line summary, once DONE);
    ``created``/``started``/``ended``: ``time.time()`` stamps; ``output``: the file it
    writes (the GGUF for a quantize, else the model's results file)."""

    id: str
    kind: JobKind
    title: str
    spec: dict[str, Any] = field(compare=True)
    output: Path | None = None
    chain: str | None = None
    after: str | None = None
    state: JobState = JobState.QUEUED
    error: str = ""
    message: str = ""
    created: float = 0.0
    started: float | None = None
    ended: float | None = None

    @property
    def model(self) -> Path:
        """The model file the job reads (the F16 base for a quantize)."""
        return Path(self.spec["model"])

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds it ran (so far, while running); None before it started."""
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else (time.time() if now is None else now)
        return max(0.0, end - self.started)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "title": self.title,
            "spec": self.spec,
            "output": None if self.output is None else str(self.output),
            "chain": self.chain,
            "after": self.after,
            "state": self.state.value,
            "error": self.error,
            "message": self.message,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
        }

    @staticmethod
    def from_json(d: object, where: str) -> QueueEntry:
        """Every field checked; ``InputError`` naming ``where`` and the field."""
        if not isinstance(d, dict):
            raise InputError(f"{where}: must be an object, not {shown(d, 40)}")

        def text(key: str, optional: bool = False) -> Any:
            v = d.get(key)
            if (v is None and optional) or isinstance(v, str):
                return v
            raise InputError(f"{where}: field {key!r} must be a text, not {shown(v, 40)}")

        def stamp(key: str) -> float | None:
            v = d.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InputError(f"{where}: field {key!r} must be a time stamp")
            return float(v)

        try:
            kind, state = JobKind(d.get("kind")), JobState(d.get("state"))
        except ValueError:
            raise InputError(
                f"{where}: unknown kind {shown(d.get('kind'), 20)} or state "
                f"{shown(d.get('state'), 20)}"
            ) from None
        spec = d.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
            raise InputError(f"{where}: field 'spec' must be an object naming a 'model'")
        out = text("output", optional=True)
        return QueueEntry(
            id=text("id"),
            kind=kind,
            title=text("title"),
            spec=spec,
            output=None if out is None else Path(out),
            chain=text("chain", optional=True),
            after=text("after", optional=True),
            state=state,
            error=text("error", optional=True) or "",
            message=text("message", optional=True) or "",
            created=stamp("created") or 0.0,
            started=stamp("started"),
            ended=stamp("ended"),
        )


# --- building entries ------------------------------------------------------------------------


def _entry(kind: JobKind, title: str, spec: dict[str, Any], output: Path | None) -> QueueEntry:
    return QueueEntry(new_id(), kind, title, spec, output, created=time.time())


def quantize_entry(
    model: Path, plan: QuantPlan, plan_name: str | None, output: Path, imatrix: Path | None
) -> QueueEntry:
    """Quantize ``model`` with ``plan`` into ``output``."""
    spec = {
        "model": str(model),
        "output": str(output),
        "plan": plan.to_dict(),
        "plan_name": plan_name,
        "imatrix": None if imatrix is None else str(imatrix),
    }
    return _entry(JobKind.QUANTIZE, f"Quantize {output.name}", spec, Path(output))


def eval_entry(model: Path, base: Path | None, settings: EvalSettings) -> QueueEntry:
    """PPL of ``model``, with KLD against ``base`` when given, under ``settings``."""
    what = "PPL/KLD" if base is not None else "PPL"
    spec = {
        "model": str(model),
        "base": None if base is None else str(base),
        "settings": settings.to_json(),
    }
    return _entry(JobKind.EVAL, f"{what} of {model.name}", spec, results_path(Path(model)))


def task_entry(model: Path, task: str, settings: EvalSettings) -> QueueEntry:
    """The setting's benchmark ``task`` (a ``TaskSetting.name``) on ``model``."""
    if not any(t.name == task for t in settings.tasks):
        raise InputError(f"the evaluation setting has no benchmark {shown(task, 40)!r}")
    spec = {"model": str(model), "task": task, "settings": settings.to_json()}
    return _entry(JobKind.TASKS, f"{task} on {model.name}", spec, results_path(Path(model)))


def bench_entry(model: Path, settings: EvalSettings) -> QueueEntry:
    spec = {"model": str(model), "settings": settings.to_json()}
    return _entry(JobKind.BENCH, f"Bench {model.name}", spec, results_path(Path(model)))


def chained(entries: Sequence[QueueEntry]) -> tuple[QueueEntry, ...]:
    """``entries`` as one chain: each waits for the one before it."""
    chain = new_id()
    out: list[QueueEntry] = []
    for e in entries:
        out.append(replace(e, chain=chain, after=out[-1].id if out else None))
    return tuple(out)


def quantize_and_check_entries(
    plan: QuantPlan,
    plan_name: str | None,
    output: Path,
    imatrix: Path | None,
    base: Path,
    settings: EvalSettings,
) -> tuple[QueueEntry, ...]:
    """ "Quantize & check": quantize ``base`` with ``plan`` into ``output``, then PPL/KLD of
    the file against ``base``, each benchmark of ``settings`` and the bench, as one chain."""
    output = Path(output)
    steps = [
        quantize_entry(base, plan, plan_name, output, imatrix),
        eval_entry(output, base, settings),
        *(task_entry(output, t.name, settings) for t in settings.tasks),
        bench_entry(output, settings),
    ]
    return chained(steps)


# --- transitions -----------------------------------------------------------------------------


def find(entries: Sequence[QueueEntry], entry_id: str) -> QueueEntry:
    """The entry ``entry_id``; ``InputError`` if the queue has none."""
    for e in entries:
        if e.id == entry_id:
            return e
    raise InputError(f"the run queue has no job {shown(entry_id, 20)!r}")


def _set(entries: Sequence[QueueEntry], new: Iterable[QueueEntry]) -> tuple[QueueEntry, ...]:
    by_id = {e.id: e for e in new}
    return tuple(by_id.get(e.id, e) for e in entries)


def later_in_chain(entries: Sequence[QueueEntry], entry_id: str) -> tuple[QueueEntry, ...]:
    """The entries that wait, directly or through others, for ``entry_id``, in queue order."""
    waiting = {entry_id}
    grew = True
    while grew:
        grew = False
        for e in entries:
            if e.after in waiting and e.id not in waiting:
                waiting.add(e.id)
                grew = True
    return tuple(e for e in entries if e.id in waiting and e.id != entry_id)


def _ready(entries: Sequence[QueueEntry], e: QueueEntry) -> bool:
    """Whether ``e``'s predecessor is DONE (or gone from the queue, having finished)."""
    if e.after is None:
        return True
    before = next((x for x in entries if x.id == e.after), None)
    return before is None or before.state is JobState.DONE


def runnable(entries: Sequence[QueueEntry], max_parallel: int = 1) -> tuple[QueueEntry, ...]:
    """The queued entries to start now: the first ones in queue order whose predecessor is
    done, as many as ``max_parallel`` leaves room for beside those running."""
    free = max(1, max_parallel) - sum(e.state is JobState.RUNNING for e in entries)
    if free <= 0:
        return ()
    ready = [e for e in entries if e.state is JobState.QUEUED and _ready(entries, e)]
    return tuple(ready[:free])


def next_runnable(entries: Sequence[QueueEntry], max_parallel: int = 1) -> QueueEntry | None:
    r = runnable(entries, max_parallel)
    return r[0] if r else None


def mark_running(
    entries: Sequence[QueueEntry], entry_id: str, now: float | None = None
) -> tuple[QueueEntry, ...]:
    e = find(entries, entry_id)
    if e.state is not JobState.QUEUED:
        raise InputError(f"job {e.title!r} is {e.state.value}, not queued: it cannot start")
    started = time.time() if now is None else now
    run = replace(e, state=JobState.RUNNING, started=started, ended=None, error="", message="")
    return _set(entries, [run])


def mark_done(
    entries: Sequence[QueueEntry], entry_id: str, message: str = "", now: float | None = None
) -> tuple[QueueEntry, ...]:
    e = find(entries, entry_id)
    ended = time.time() if now is None else now
    return _set(entries, [replace(e, state=JobState.DONE, message=message, ended=ended)])


def _end(
    entries: Sequence[QueueEntry], entry_id: str, state: JobState, error: str, now: float | None
) -> tuple[QueueEntry, ...]:
    """``entry_id`` ended in ``state``; the later steps of its chain still waiting are
    SKIPPED (they would run on a file that was never made)."""
    e = find(entries, entry_id)
    ended = time.time() if now is None else now
    why = f"skipped: {e.title!r} {state.value}"
    skipped = [
        replace(x, state=JobState.SKIPPED, error=why, ended=ended)
        for x in later_in_chain(entries, entry_id)
        if x.state is JobState.QUEUED
    ]
    return _set(entries, [replace(e, state=state, error=error, ended=ended), *skipped])


def mark_failed(
    entries: Sequence[QueueEntry], entry_id: str, error: str, now: float | None = None
) -> tuple[QueueEntry, ...]:
    return _end(entries, entry_id, JobState.FAILED, error, now)


def mark_cancelled(
    entries: Sequence[QueueEntry], entry_id: str, now: float | None = None
) -> tuple[QueueEntry, ...]:
    """The user cancelled ``entry_id`` (running or still queued)."""
    e = find(entries, entry_id)
    if e.state in ENDED:
        return tuple(entries)
    return _end(entries, entry_id, JobState.CANCELLED, "cancelled", now)


def mark_interrupted(
    entries: Sequence[QueueEntry], now: float | None = None
) -> tuple[QueueEntry, ...]:
    """Every RUNNING entry becomes INTERRUPTED: the process that ran it is gone."""
    out = tuple(entries)
    for e in entries:
        if e.state is JobState.RUNNING:
            out = _end(out, e.id, JobState.INTERRUPTED, "interrupted: the app ended while "
                       "it ran (killed, crashed or the power went)", now)  # fmt: skip
    return out


def requeued(entries: Sequence[QueueEntry], entry_id: str) -> tuple[QueueEntry, ...]:
    """``entry_id`` queued again, with what it needs and what waits for it: its predecessors
    back to the last DONE one and the later SKIPPED steps of its chain."""
    e = find(entries, entry_id)
    if e.state not in REQUEUEABLE:
        raise InputError(f"job {e.title!r} is {e.state.value}: only an ended job that did not "
                         "finish can be queued again")  # fmt: skip
    again = [e]
    before = next((x for x in entries if x.id == e.after), None) if e.after else None
    while before is not None and before.state in REQUEUEABLE:
        again.append(before)
        before = next((x for x in entries if x.id == before.after), None) if before.after else None
    for x in list(again):
        again += [y for y in later_in_chain(entries, x.id) if y.state is JobState.SKIPPED]
    fresh = {
        x.id: replace(x, state=JobState.QUEUED, error="", message="", started=None, ended=None)
        for x in again
    }
    return _set(entries, fresh.values())


def removed(entries: Sequence[QueueEntry], entry_id: str) -> tuple[QueueEntry, ...]:
    """The queue without ``entry_id`` (not while it runs). Unless it was DONE, the steps of
    its chain that wait for it (queued or skipped) go too: they could never run."""
    e = find(entries, entry_id)
    if e.state is JobState.RUNNING:
        raise InputError(f"job {e.title!r} is running: cancel it first")
    gone = {e.id}
    if e.state is not JobState.DONE:
        gone |= {
            x.id
            for x in later_in_chain(entries, entry_id)
            if x.state in (JobState.QUEUED, JobState.SKIPPED)
        }
    return tuple(x for x in entries if x.id not in gone)


def cleared(entries: Sequence[QueueEntry]) -> tuple[QueueEntry, ...]:
    """The queue without its ended entries, except those of a chain still queued or running."""
    live = {e.chain for e in entries if e.state not in ENDED and e.chain is not None}
    return tuple(e for e in entries if e.state not in ENDED or (e.chain and e.chain in live))


def moved(entries: Sequence[QueueEntry], entry_id: str, delta: int) -> tuple[QueueEntry, ...]:
    """``entry_id`` (queued) moved ``delta`` places among the queued entries (negative: up,
    sooner); the others keep their places."""
    e = find(entries, entry_id)
    if e.state is not JobState.QUEUED:
        raise InputError(f"job {e.title!r} is {e.state.value}: only queued jobs move")
    slots = [i for i, x in enumerate(entries) if x.state is JobState.QUEUED]
    queued = [entries[i] for i in slots]
    i = queued.index(e)
    j = max(0, min(len(queued) - 1, i + delta))
    queued.insert(j, queued.pop(i))
    out = list(entries)
    for slot, x in zip(slots, queued, strict=True):
        out[slot] = x
    return tuple(out)
