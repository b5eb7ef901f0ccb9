"""Progress reports and cancellation, as plain data.

A job takes a ``ProgressSink`` (any callable that accepts a ``Progress``) and a ``CancelToken``.
The core never formats a UI string for progress: it reports (stage, done, total, message) and
the CLI draws a bar, the GUI a progress widget.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .errors import Cancelled


class Stage(str, Enum):
    """The phases a job reports progress for."""

    LOAD = "load"
    UPCAST = "upcast"
    QUANTIZE = "quantize"
    WRITE = "write"
    EVAL = "eval"
    DOWNLOAD = "download"


@dataclass(frozen=True)
class Progress:
    """One progress event: ``done`` of ``total`` units of ``stage`` finished."""

    stage: Stage
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.done / self.total)


ProgressSink = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """A sink that drops every event."""


class CancelToken:
    """Thread-safe cancellation flag shared between a job and whoever may stop it.

    ``wait_fd()`` gives a file descriptor that becomes readable once the token is cancelled
    (and stays so), so a waiter can block in ``select`` on it next to its other sources
    instead of waking up on a timer to look at the flag."""

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

    def wait_fd(self) -> int:
        """A descriptor readable once cancelled; owned by the token (closed with it)."""
        with self._lock:
            if self._pipe is None:
                r, w = os.pipe()
                self._pipe = (r, w)
                if self._event.is_set():
                    os.write(w, b"x")
            return self._pipe[0]

    def __del__(self) -> None:
        pipe = getattr(self, "_pipe", None)
        if pipe is not None:
            for fd in pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)


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
