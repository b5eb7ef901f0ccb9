"""The run queue of the open project: one core job per entry, in order, through the bridge.

``RunQueueController`` (``ctx.queue``) keeps the core's queue (``results.run_queue``: a tuple
of frozen entries changed only by its pure functions), submits the next runnable entry's
``run_entry`` to the ``JobRunner`` — one at a time unless the ``max_parallel`` setting says
more — and writes the project's job journal on every change of state, so an app that dies
mid-job is found out at the next open (``recover_journal``: INTERRUPTED, no half-written
file). A failing entry shows its error in its row and the queue goes on; a failed,
cancelled or interrupted step skips the rest of its chain.

A job stopped from outside the queue — the Jobs dock's Cancel, or quit/close cancelling
every job — is CANCELLED too, and the queue then *pauses*: the next entry does not start
under a shutdown. Entries still queued when a project is reopened wait for Resume (the app
never starts heavy work by itself on open); adding or re-queuing resumes.

The speed test (``results.speed.speed_test``) runs exclusively (``SpeedTestGate``): once
asked for, the queue starts nothing new, waits for the jobs running, runs the test alone,
then goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from lwq_app.core.hub.defaults import default_eval_settings
from lwq_app.core.jobs import LwqError, OutputError, one_line
from lwq_app.core.plan import QuantPlan
from lwq_app.core.results import run_queue as rq
from lwq_app.core.results.eval_settings import EvalSettings
from lwq_app.core.results.journal import (
    Recovery,
    journal_path,
    recover_journal,
    save_journal,
)
from lwq_app.core.results.run_entry import EntryResult, run_entry
from lwq_app.core.results.run_queue import JobState, QueueEntry
from lwq_app.core.results.speed import SpeedTestRequest, SpeedTestResult

from .job_panel import describe_progress
from .notifier import Notifier
from .session import ProjectSession
from .speed_gate import SpeedTestGate
from .worker import Job, JobRunner

log = logging.getLogger("lwq.gui.queue")

#: the most jobs the queue runs at once (the setting is clamped to 1…this)
MAX_PARALLEL = 8
#: progress lines kept per entry (its log)
LOG_LINES = 200


class RunQueueController(QObject):
    """The project's job queue; ``entries`` is the core's tuple of ``QueueEntry``."""

    entries_changed = Signal()
    entry_progressed = Signal(str)  # entry id: its job's progress, ETA and log changed
    results_changed = Signal(object)  # Path of the model whose stored results changed
    variants_changed = Signal()  # a quantize recorded its ProjectVariant in the session
    speed_test_changed = Signal()  # a speed test was asked for, started or ended
    speed_tested = Signal(object)  # SpeedTestResult
    paused_changed = Signal(bool)

    SETTINGS_PARALLEL = "run/max_parallel"

    def __init__(
        self,
        runner: JobRunner,
        notifier: Notifier,
        session: ProjectSession,
        settings: QSettings,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._runner, self._notifier, self._session = runner, notifier, session
        self._settings = settings
        self._entries: tuple[QueueEntry, ...] = ()
        self._folder: Path | None = None
        self._generation = 0  # bumped when the project changes: late ends are ignored
        self._jobs: dict[str, Job] = {}  # entry id -> its running job
        self._by_job: dict[int, str] = {}  # job id -> entry id
        self._logs: dict[str, list[str]] = {}
        self._user_cancelled: set[str] = set()
        self._paused = False
        self._speed = SpeedTestGate(runner, notifier, self)
        self._speed.changed.connect(self.speed_test_changed)
        self._speed.changed.connect(self._pump)
        self._speed.tested.connect(self._on_speed_tested)
        self._speed.stopped.connect(lambda: self._set_paused(True))
        self._journal_failed = False
        self._loading = False  # the journal is being read: nothing is written or started
        session.opened.connect(self._on_opened)
        session.closed.connect(self._on_closed)
        runner.job_progressed.connect(self._on_progress)

    # -- what the views read ----------------------------------------------------------------
    @property
    def entries(self) -> tuple[QueueEntry, ...]:
        return self._entries

    def entry(self, entry_id: str) -> QueueEntry:
        return rq.find(self._entries, entry_id)

    def job_for(self, entry_id: str) -> Job | None:
        """The running job of an entry (its progress and ETA), or None."""
        return self._jobs.get(entry_id)

    def log_lines(self, entry_id: str) -> tuple[str, ...]:
        """The entry's progress lines this session, oldest first."""
        return tuple(self._logs.get(entry_id, ()))

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def speed_test_waiting(self) -> bool:
        """A speed test was asked for and waits for the running jobs to end."""
        return self._speed.waiting

    @property
    def speed_job(self) -> Job | None:
        return self._speed.job

    @property
    def max_parallel(self) -> int:
        try:
            n = int(self._settings.value(self.SETTINGS_PARALLEL, 1))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            n = 1
        return max(1, min(MAX_PARALLEL, n))

    @max_parallel.setter
    def max_parallel(self, n: int) -> None:
        self._settings.setValue(self.SETTINGS_PARALLEL, max(1, min(MAX_PARALLEL, int(n))))
        self._pump()

    # -- what the views ask for -------------------------------------------------------------
    def add(self, entries: Iterable[QueueEntry]) -> None:
        """Queue ``entries`` at the end (and resume the queue)."""
        new = tuple(entries)
        if not new:
            return
        if self._folder is None:
            self._notifier.warn("Run", "Open a model first: the queue belongs to its project")
            return
        self._change(self._entries + new)
        self._set_paused(False)
        self._pump()

    def quantize_and_check(self, plan: QuantPlan, output: Path, plan_name: str | None) -> None:
        """Queue quantize → PPL/KLD against the project's F16 base → its benchmarks → bench,
        under the project's evaluation setting (the default one, kept in the project, when
        it has none yet)."""
        model, state = self._session.model, self._session.state
        if model is None or state is None:
            self._notifier.warn("Quantize & check", "Open a model first")
            return
        settings = self.eval_settings()
        chain = rq.quantize_and_check_entries(
            plan, plan_name, Path(output), state.imatrix, model.path, settings
        )
        self.add(chain)

    def eval_settings(self) -> EvalSettings:
        """The project's evaluation setting; the default is kept in the project the first
        time, so every variant is measured the same way even if the default changes."""
        state = self._session.state
        if state is not None and state.eval_settings is not None:
            return state.eval_settings
        settings = default_eval_settings()
        if state is not None:
            self._session.update(eval_settings=settings)
        return settings

    def speed_test(self, models: Sequence[Path]) -> None:
        """Bench ``models`` alone, at normal priority: the queue waits for the running jobs
        and starts nothing until the test ends. A busy machine is said first."""
        self._speed.ask(SpeedTestRequest(tuple(Path(m) for m in models), self.eval_settings()))

    def cancel(self, entry_id: str) -> None:
        """Stop a running entry (its child is killed) or drop a queued one from the run."""
        e = self._find(entry_id)
        if e is None:
            return
        job = self._jobs.get(entry_id)
        if job is not None:
            self._user_cancelled.add(entry_id)
            self._runner.cancel(job)  # CANCELLED once its end is delivered
            self.entry_progressed.emit(entry_id)
        elif e.state is JobState.QUEUED:
            self._change(rq.mark_cancelled(self._entries, entry_id))

    def cancel_speed_test(self) -> None:
        """Drop the speed tests asked for and stop the one running; the queue goes on."""
        self._speed.cancel()

    def requeue(self, entry_id: str) -> None:
        self._apply(partial(rq.requeued, entry_id=entry_id), "Re-queue")
        self._set_paused(False)
        self._pump()

    def remove(self, entry_id: str) -> None:
        self._apply(partial(rq.removed, entry_id=entry_id), "Remove")

    def move(self, entry_id: str, delta: int) -> None:
        self._apply(partial(rq.moved, entry_id=entry_id, delta=delta), "Move")

    def clear_finished(self) -> None:
        self._apply(rq.cleared, "Clear finished jobs")

    def resume(self) -> None:
        self._set_paused(False)
        self._pump()

    # -- the queue ----------------------------------------------------------------------------
    def _find(self, entry_id: str) -> QueueEntry | None:
        return next((e for e in self._entries if e.id == entry_id), None)

    def _apply(
        self, fn: Callable[[tuple[QueueEntry, ...]], tuple[QueueEntry, ...]], what: str
    ) -> None:
        try:
            self._change(fn(self._entries))
        except LwqError as e:
            self._notifier.report(e, what)

    def _change(self, entries: tuple[QueueEntry, ...]) -> None:
        """Take the new queue, write the journal, tell the views."""
        self._entries = entries
        self._write_journal()
        self.entries_changed.emit()

    def _write_journal(self) -> None:
        if self._folder is None or self._loading:
            return
        if not self._entries and not journal_path(self._folder).exists():
            return  # nothing ever queued here: the project folder gets no file
        try:
            save_journal(self._folder, self._entries)
            self._journal_failed = False
        except (LwqError, OSError) as e:
            if not self._journal_failed:  # said once, not on every change
                if not isinstance(e, LwqError):
                    e = OutputError(f"{journal_path(self._folder)}: cannot write ({e})")
                self._notifier.report(e, "Write the job journal")
            self._journal_failed = True

    def _set_paused(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            self.paused_changed.emit(paused)

    def _pump(self) -> None:
        """Start what may start now: a waiting speed test once nothing runs, else the next
        runnable entries."""
        if self._speed.blocks(idle=not self._jobs):
            return
        if self._paused or self._folder is None or self._loading:
            return
        for e in rq.runnable(self._entries, self.max_parallel):
            self._start(e)

    def _start(self, entry: QueueEntry) -> None:
        self._change(rq.mark_running(self._entries, entry.id))
        running = self.entry(entry.id)
        gen = self._generation
        self._logs[entry.id] = []
        job = self._runner.submit(
            entry.title,
            run_entry,
            running,
            on_result=lambda r: self._on_result(gen, entry.id, r),
            on_error=lambda e: self._on_error(gen, entry.id, e),
            on_cancel=lambda: self._on_cancel(gen, entry.id),
        )
        self._jobs[entry.id] = job
        self._by_job[job.id] = entry.id

    def _ended(self, gen: int, entry_id: str) -> bool:
        """Forget the entry's job; False if the project changed since it started."""
        job = self._jobs.pop(entry_id, None)
        if job is not None:
            self._by_job.pop(job.id, None)
        return gen == self._generation and self._find(entry_id) is not None

    def _on_result(self, gen: int, entry_id: str, r: EntryResult) -> None:
        if not self._ended(gen, entry_id):
            return
        self._change(rq.mark_done(self._entries, entry_id, r.summary))
        try:
            state, variant = self._session.state, r.variant()
            if variant is not None and state is not None:
                self._session.set_state(state.with_variant(variant))
                self.variants_changed.emit()
            elif r.measured is not None:
                self.results_changed.emit(r.model)
        except OSError as e:  # the file went between the job's end and now
            self._notifier.report(OutputError(f"{r.model}: {e.strerror or e}"), "Run")
        finally:
            self._pump()  # whatever a listener did, the queue goes on

    def _on_error(self, gen: int, entry_id: str, exc: BaseException) -> None:
        if not self._ended(gen, entry_id):
            return
        text = one_line(str(exc)) or type(exc).__name__
        self._change(rq.mark_failed(self._entries, entry_id, text))
        self._pump()  # the runner has told the user; the queue goes on

    def _on_cancel(self, gen: int, entry_id: str) -> None:
        mine = entry_id in self._user_cancelled
        self._user_cancelled.discard(entry_id)
        if not self._ended(gen, entry_id):
            return
        self._change(rq.mark_cancelled(self._entries, entry_id))
        if not mine:  # stopped from outside (the Jobs dock, a shutdown): start nothing now
            self._set_paused(True)
            self._speed.drop_waiting()
        self._pump()

    def _on_progress(self, job: Job) -> None:
        entry_id = self._by_job.get(job.id)
        if entry_id is None:
            return
        line = describe_progress(job)
        lines = self._logs.setdefault(entry_id, [])
        if not lines or lines[-1] != line:
            lines.append(line)
            del lines[:-LOG_LINES]
        self.entry_progressed.emit(entry_id)

    def _on_speed_tested(self, result: SpeedTestResult) -> None:
        for model, _bench in result.runs:
            self.results_changed.emit(model)
        self.speed_tested.emit(result)

    # -- the project ------------------------------------------------------------------------------
    def _on_opened(self) -> None:
        folder = self._session.folder
        if folder is None or folder == self._folder:
            return  # the same project again (another copy of its model)
        self._forget()
        self._folder = folder
        self._loading = True
        gen = self._generation

        def failed(_e: BaseException) -> None:  # reported by the runner; start afresh
            if gen == self._generation:
                self._loading = False
                self._change(self._entries)
                self._pump()

        def loaded(rec: Recovery) -> None:
            if gen != self._generation:
                return
            self._loading = False
            added, self._entries = self._entries, rec.entries + self._entries
            if rec.interrupted:
                names = ", ".join(repr(e.title) for e in rec.interrupted)
                removed = f"; removed {len(rec.removed)} unfinished file(s)" if rec.removed else ""
                self._notifier.warn("Run", f"interrupted when the app ended: {names}{removed}")
            for p, why in rec.not_removed:
                self._notifier.warn("Run", f"{p}: could not remove this unfinished file: {why}")
            if not added and any(e.state is JobState.QUEUED for e in rec.entries):
                self._set_paused(True)  # waits for Resume: nothing heavy starts on open
            self._change(self._entries)
            self._pump()

        self._runner.submit_call(
            "Read the job journal", partial(recover_journal, folder), on_result=loaded,
            on_error=failed,
        )  # fmt: skip

    def _on_closed(self) -> None:
        """The project closed: its running jobs are cancelled (and said so in its journal)."""
        for entry_id, job in list(self._jobs.items()):
            self._runner.cancel(job)
            self._entries = rq.mark_cancelled(self._entries, entry_id)
        self._write_journal()
        self._forget()
        self.entries_changed.emit()

    def _forget(self) -> None:
        self._generation += 1
        self._entries, self._folder = (), None
        self._jobs.clear()
        self._by_job.clear()
        self._logs.clear()
        self._user_cancelled.clear()
        self._loading = False
        self._set_paused(False)
