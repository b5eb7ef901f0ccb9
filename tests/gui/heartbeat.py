"""A GUI-thread heartbeat: how long the event loop went without running a 10 ms timer.

Any work on the GUI thread (a core job run there by mistake, a slow slot, a big repaint)
shows up as a gap between two ticks. Used by the responsiveness tests and by
``benchmarks/gui_heartbeat.py``::

    with Heartbeat() as hb:
        qtbot.waitUntil(lambda: job.done, timeout=60_000)
    assert hb.max_gap_ms < 500, hb.summary()
"""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer

#: the timer's period in milliseconds
INTERVAL_MS = 10


class Heartbeat(QObject):
    """A precise 10 ms timer on the GUI thread that records the gaps between its ticks."""

    def __init__(self, interval_ms: int = INTERVAL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.gaps_ms: list[float] = []
        self._last: float | None = None
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> Heartbeat:
        self.gaps_ms.clear()
        self._last = time.perf_counter()
        self._timer.start()
        return self

    def stop(self) -> Heartbeat:
        if self._timer.isActive():
            self._tick()  # the gap up to now counts too (a block right before stop)
        self._timer.stop()
        return self

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps_ms.append((now - self._last) * 1000.0)
        self._last = now

    @property
    def ticks(self) -> int:
        return len(self.gaps_ms)

    @property
    def max_gap_ms(self) -> float:
        return max(self.gaps_ms, default=0.0)

    @property
    def p99_gap_ms(self) -> float:
        return float(np.percentile(self.gaps_ms, 99)) if self.gaps_ms else 0.0

    def summary(self) -> str:
        return (
            f"{self.ticks} ticks of {self.interval_ms} ms: max gap {self.max_gap_ms:.1f} ms, "
            f"p99 {self.p99_gap_ms:.1f} ms"
        )


class PhaseHeartbeat(QObject):
    """A ``Heartbeat`` per progress phase of the jobs the runner reports (``download``,
    ``verify``, ``convert``, ``hash``…): the gaps are filed under the phase running when they
    ended, so a stall is pinned on the phase that caused it::

        with PhaseHeartbeat(ctx.runner) as hb:
            ...
        assert hb.max_gap_ms("convert") < 500, hb.summary()
    """

    def __init__(self, runner: QObject, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._runner = runner
        self.gaps_ms: dict[str, list[float]] = {}
        self._label = ""
        self._beat: Heartbeat | None = None

    def start(self, label: str = "start") -> PhaseHeartbeat:
        self.gaps_ms.clear()
        self._runner.job_progressed.connect(self._on_progress)  # type: ignore[attr-defined]
        self._switch(label)
        return self

    def stop(self) -> PhaseHeartbeat:
        self._switch("")
        self._runner.job_progressed.disconnect(self._on_progress)  # type: ignore[attr-defined]
        return self

    def __enter__(self) -> PhaseHeartbeat:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _on_progress(self, job: object) -> None:
        p = getattr(job, "progress", None)
        if p is not None and p.phase.value != self._label:
            self._switch(p.phase.value)

    def _switch(self, label: str) -> None:
        if self._beat is not None:
            self._beat.stop()
            self.gaps_ms.setdefault(self._label, []).extend(self._beat.gaps_ms)
            self._beat.deleteLater()
            self._beat = None
        self._label = label
        if label:
            self._beat = Heartbeat(parent=self).start()

    def max_gap_ms(self, phase: str | None = None) -> float:
        """The longest gap in ``phase`` (every phase's when None)."""
        if phase is None:
            return max((max(g, default=0.0) for g in self.gaps_ms.values()), default=0.0)
        return max(self.gaps_ms.get(phase, ()), default=0.0)

    def p99_gap_ms(self, phase: str) -> float:
        g = self.gaps_ms.get(phase, ())
        return float(np.percentile(g, 99)) if g else 0.0

    def ticks(self, phase: str) -> int:
        return len(self.gaps_ms.get(phase, ()))

    def summary(self) -> str:
        return "; ".join(
            f"{phase}: {len(g)} ticks, max gap {self.max_gap_ms(phase):.1f} ms, "
            f"p99 {self.p99_gap_ms(phase):.1f} ms"
            for phase, g in self.gaps_ms.items()
        )
