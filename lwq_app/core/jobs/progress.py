"""Progress reports and cancellation, as plain data.

A job takes a ``ProgressSink`` (any callable that accepts a ``Progress``) and a ``CancelToken``.
The core never formats a UI string for progress: an event is a phase, numbers done of a total
and an optional item label (a tensor, a file, a chunk). Rates and ETAs are the reader's
business: ``EtaEstimator`` is the one estimator the CLI bar and the GUI both use.

Composite jobs (calibrate, an auto plan that measures first, an evaluation that first builds
the base-logits cache, a quantize that first hashes) report one monotone 0→1 across their named
phases: ``Phases`` splits the job's range into weighted parts and gives each part a sink that
stamps every event with its ``overall`` position.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from .errors import Cancelled


class Phase(str, Enum):
    """The named phases jobs report progress for."""

    HASH = "hash"
    LOAD = "load"
    UPCAST = "upcast"
    QUANTIZE = "quantize"
    VERIFY = "verify"
    WRITE = "write"
    COLLECT = "collect"
    MEASURE = "measure"
    CALIBRATE = "calibrate"
    BASE = "base"
    EVAL = "eval"
    TASKS = "tasks"
    BENCH = "bench"
    DOWNLOAD = "download"
    CONVERT = "convert"
    UPLOAD = "upload"
    SEARCH = "search"


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` units of ``phase`` finished.

    ``overall`` is the whole job's position in [0, 1] where the job has several phases
    (``Phases`` sets it); for a one-phase job it is ``None`` and ``fraction`` is the position.
    """

    phase: Phase
    done: float
    total: float
    item: str = ""
    overall: float | None = None

    @property
    def fraction(self) -> float:
        """This phase's completed fraction, in [0, 1]."""
        return 0.0 if self.total <= 0 else max(0.0, min(1.0, self.done / self.total))

    @property
    def position(self) -> float:
        """The job's completed fraction: ``overall`` where set, else this phase's."""
        return self.fraction if self.overall is None else self.overall


ProgressSink = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """A sink that drops every event."""


class Phases:
    """One monotone 0→1 over a job's named, weighted phases.

    ``Phases(sink, [(Phase.HASH, 1), (Phase.QUANTIZE, 9)])``; ``phases.sink(Phase.QUANTIZE)``
    is the sink to hand to that part: its events are passed on with ``overall`` set to the
    part's start plus its share of the part's weight. A part may itself report ``overall``
    (a nested composite job); ``overall`` never goes back.
    """

    def __init__(self, sink: ProgressSink, parts: Sequence[tuple[Phase, float]]) -> None:
        total = sum(w for _, w in parts)
        if not parts or total <= 0:
            raise ValueError("Phases needs at least one part with a positive weight")
        self._sink = sink
        self._ranges: dict[Phase, tuple[float, float]] = {}
        start = 0.0
        for phase, weight in parts:
            if phase in self._ranges:
                raise ValueError(f"phase {phase.value} given twice")
            self._ranges[phase] = (start / total, (start + weight) / total)
            start += weight
        self._last = 0.0
        self._lock = threading.Lock()

    def sink(self, phase: Phase) -> ProgressSink:
        lo, hi = self._ranges[phase]

        def emit(p: Progress) -> None:
            with self._lock:
                pos = lo + (hi - lo) * p.position
                self._last = max(self._last, pos)
                overall = self._last
            self._sink(replace(p, overall=overall))

        return emit

    def start(self, phase: Phase, total: float = 1, item: str = "") -> ProgressSink:
        """The phase's sink, after reporting that the phase began (done 0)."""
        s = self.sink(phase)
        s(Progress(phase, 0, total, item))
        return s


class SlidingWindow:
    """The (time, count) samples of the last ``window`` seconds, for a rate that follows the
    present: ``add`` gives the oldest sample kept, whose slope to the newest is the rate. A
    count that goes back (a job that restarted it) starts the window over."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._samples: list[tuple[float, float]] = []

    def restart(self) -> None:
        self._samples.clear()

    def add(self, t: float, value: float) -> tuple[float, float]:
        """Keep ``(t, value)``; the oldest sample still in the window."""
        if self._samples and value < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((t, value))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self._window:
            self._samples.pop(0)
        return self._samples[0]


class EtaEstimator:
    """Seconds left from a stream of (position, time) samples of one job.

    The rate is the slope over a sliding window of the last ``window`` seconds (so a slow
    first phase, model loading say, stops weighing on the estimate once it is over); no
    estimate before ``min_elapsed`` seconds and 1 % of progress."""

    def __init__(self, window: float = 30.0, min_elapsed: float = 1.0) -> None:
        self._window = SlidingWindow(window)
        self._min_elapsed = min_elapsed

    def update(self, position: float, now: float | None = None) -> float | None:
        t = time.monotonic() if now is None else now
        t0, p0 = self._window.add(t, position)
        if t - t0 < self._min_elapsed or position < 0.01 or position <= p0:
            return None
        if position >= 1.0:
            return 0.0
        rate = (position - p0) / (t - t0)
        return (1.0 - position) / rate


#: where ``select`` cannot wait on a pipe (Windows), waiters poll the flag at this interval
POLL_INTERVAL = 0.1


class CancelToken:
    """Thread-safe cancellation flag, held by a job and by whoever may stop it.

    ``wait_fd()`` gives a file descriptor that becomes readable once the token is cancelled
    (and stays so), so a waiter can block in ``select`` on it next to its other sources
    instead of waking up on a timer to look at the flag. Where the platform cannot ``select``
    on a pipe (``waitable`` is false: Windows), it returns None and waiters poll the flag
    every ``POLL_INTERVAL`` seconds instead."""

    #: whether ``wait_fd`` gives a descriptor; a class attribute so a test can force the
    #: polling branch that Windows takes
    waitable: bool = os.name == "posix"

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._pipe: tuple[int, int] | None = None

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            if self._pipe is not None:
                os.write(self._pipe[1], b"x")  # one byte, once: the descriptor stays readable

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until cancelled; True if cancelled."""
        return self._event.wait(timeout)

    def wait_fd(self) -> int | None:
        """A descriptor readable once cancelled (owned by the token), or None where the
        platform cannot wait on one: then poll ``cancelled``."""
        if not self.waitable:
            return None
        with self._lock:
            if self._pipe is None:
                r, w = os.pipe()
                self._pipe = (r, w)
                if self._event.is_set():
                    os.write(w, b"x")
            return self._pipe[0]

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # ``_close`` bound at definition: at interpreter exit the module's globals may be gone
        # already (a "'NoneType' object is not callable" was printed after a failed tour)
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            for fd in pipe:
                try:  # noqa: SIM105 - not contextlib.suppress: it may be gone too at exit
                    _close(fd)
                except OSError:
                    pass


def check(cancel: CancelToken | None) -> None:
    """Raise ``Cancelled`` if ``cancel`` is set (every job calls this on entry)."""
    if cancel is not None:
        cancel.raise_if_cancelled()


class Throttle:
    """Pass progress on at most every ``interval`` seconds, always the first and last event."""

    def __init__(self, sink: ProgressSink, interval: float = 0.1) -> None:
        self._sink = sink
        self._interval = interval
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.done == 0 or p.done >= p.total or now - self._last >= self._interval:
            self._last = now
            self._sink(p)
