"""Byte progress of a transfer: kept alive from the child, and read as a rate.

``Heartbeat`` repeats the child's last event while a request waits (importing huggingface_hub,
a slow server, a stall), so the parent and the GUI hear from it; ``TransferRate`` is what the
reader derives from the events: bytes per second and seconds left (the core reports only done
and total, as for every phase).
"""

from __future__ import annotations

import threading
import time

from ..jobs.progress import Phase, Progress, ProgressSink, SlidingWindow


class Heartbeat:
    """A sink that passes events on (from any thread) and, after ``interval`` seconds without
    one, sends the last event again, so the parent hears from a download that waits."""

    def __init__(self, sink: ProgressSink, first: Progress, interval: float = 0.5) -> None:
        self._sink, self._last, self._interval = sink, first, interval
        self._at = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __call__(self, p: Progress) -> None:
        with self._lock:
            self._last, self._at = p, time.monotonic()
            self._sink(p)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval / 2):
            with self._lock:
                if time.monotonic() - self._at >= self._interval:
                    self._at = time.monotonic()
                    self._sink(self._last)

    def __enter__(self) -> Heartbeat:
        self(self._last)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TransferRate:
    """Bytes per second and seconds left, from a stream of byte-progress events (the CLI bar and
    the GUI both show them): the slope over the last ``window`` seconds, restarted when the
    phase changes or the count goes back."""

    def __init__(self, window: float = 10.0) -> None:
        self._window = SlidingWindow(window)
        self._phase: Phase | None = None

    def update(self, p: Progress, now: float | None = None) -> tuple[float | None, float | None]:
        """``(bytes_per_second, seconds_left)``; None where not known yet."""
        t1 = time.monotonic() if now is None else now
        if p.phase != self._phase:
            self._window.restart()
            self._phase = p.phase
        t0, d0 = self._window.add(t1, p.done)
        d1 = p.done
        if t1 - t0 < 0.5 or d1 <= d0:
            return None, None
        rate = (d1 - d0) / (t1 - t0)
        return rate, max(0.0, (p.total - p.done) / rate)
