"""One way out: Close, Quit, SIGTERM, SIGINT and session logout all end here.

``ShutdownController.start`` cancels every running job (the core kills its child processes
when a ``CancelToken`` is set), waits for them at most ``JOB_WAIT`` seconds *without*
blocking the event loop (so their ends are delivered and a second signal is still heard),
saves and closes the project (which releases its lock), and emits ``finished`` with the exit
code. ``finish_now`` is the same, blocking, for when no event loop will run again
(``aboutToQuit``, a session manager's ``commitDataRequest``).

Python runs a signal handler only when the interpreter gets control, which it does not while
Qt's loop sleeps: ``SignalWakeupBridge`` points ``signal.set_wakeup_fd`` at one end of a
socket pair and wakes the loop with a ``QSocketNotifier`` on the other (POSIX), or ticks a
short timer (elsewhere). A second signal while shutting down exits at once; a ``HardDeadline``
thread makes sure the process is gone within 5 s even if something hangs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

import psutil
from PySide6.QtCore import QCoreApplication, QObject, QSocketNotifier, QTimer, Signal

from .context import AppContext

#: seconds the jobs get to end after cancel
JOB_WAIT = 4.0
#: seconds from the start of a shutdown to a forced exit (the promise is 5 s)
HARD_LIMIT = 4.8
POLL_MS = 20

log = logging.getLogger("lwq.gui")


def kill_children(grace: float = 0.3) -> list[int]:
    """Terminate, then kill, every child process of this one that is still there."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for c in children:
        with contextlib.suppress(psutil.Error):
            c.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for c in alive:
        with contextlib.suppress(psutil.Error):
            c.kill()
    psutil.wait_procs(alive, timeout=grace)
    return [c.pid for c in children]


def hard_exit(code: int) -> None:
    """Leave now: no orphan child, the log flushed, no Qt teardown."""
    kill_children(0.2)
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


class HardDeadline:
    """A daemon thread that ``hard_exit``s unless ``cancel`` comes first."""

    def __init__(self, seconds: float, code: int) -> None:
        self.code = code
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(seconds,), name="lwq-hard-deadline", daemon=True
        )
        self._thread.start()

    def _run(self, seconds: float) -> None:
        if not self._stop.wait(seconds):
            log.error("shutdown took over %.1f s: exiting now", seconds)
            hard_exit(self.code)

    def cancel(self) -> None:
        self._stop.set()


class ShutdownController(QObject):
    """Cancel jobs, wait ≤ 4 s, save and close the project, then report ``finished``."""

    started = Signal(str)  # the reason: "close", "quit", "SIGTERM", …
    finished = Signal(int)  # the exit code

    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.reason = ""
        self.code = 0
        self.in_progress = False
        self.done = False
        #: jobs that had not ended when the wait ran out (their threads may still run)
        self.stuck: tuple[str, ...] = ()
        #: whether this controller owns the process (the app, not a test): it may then kill
        #: leftover children and force the exit at ``HARD_LIMIT``
        self.owns_process = False
        self._deadline = 0.0
        self._hard: HardDeadline | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._tick)

    def start(self, reason: str, code: int = 0) -> None:
        """Begin shutting down (again: nothing happens)."""
        if self.in_progress or self.done:
            return
        self.in_progress = True
        self.reason, self.code = reason, code
        running = self._ctx.runner.running
        log.info(
            "shutting down (%s); cancelling %d job(s)%s",
            reason,
            len(running),
            "".join(f"\n  {j.title}" for j in running),
        )
        if self.owns_process:
            self._hard = HardDeadline(HARD_LIMIT, code)
        self.started.emit(reason)
        self._ctx.runner.cancel_all()
        self._deadline = time.monotonic() + JOB_WAIT
        self._poll.start()  # the first look at the jobs is one tick away, from the loop

    def finish_now(self, reason: str, code: int = 0) -> None:
        """The blocking form, for when the event loop will not run again."""
        if self.done:
            return
        self.start(reason, code)
        self._poll.stop()
        left = max(0.0, self._deadline - time.monotonic())
        self._ctx.runner.wait(left)
        QCoreApplication.processEvents()  # deliver the jobs' ends (their slots, the panel)
        self._finish()

    def _tick(self) -> None:
        if self.done:
            return
        self._ctx.runner.cancel_all()  # a job a slot started since (on another's end) too
        if self._ctx.runner.running and time.monotonic() < self._deadline:
            return
        self._poll.stop()
        self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        runner = self._ctx.runner
        if not runner.running:
            runner.wait(0.5)  # the ends were delivered; let the pool threads return
        self.stuck = tuple(j.title for j in runner.running)
        if self.stuck:
            log.warning("jobs still running after %.0f s: %s", JOB_WAIT, ", ".join(self.stuck))
        if self.owns_process:
            killed = kill_children()
            if killed:
                log.warning("killed leftover child processes %s", killed)
        try:
            self._ctx.session.close()  # saves, releases the lock
        except Exception as e:  # a bug must not keep the app from exiting
            self._ctx.notifier.report(e, "Close the project")
        self.done = True
        self.in_progress = False
        log.info("shut down (%s)", self.reason)
        self.finished.emit(self.code)

    def release(self) -> None:
        """The process is about to return normally: the hard deadline is not needed."""
        if self._hard is not None:
            self._hard.cancel()


class SignalWakeupBridge(QObject):
    """Turns SIGINT/SIGTERM into ``signalled`` on the GUI thread, even while Qt idles."""

    signalled = Signal(int)  # the signal number

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.count = 0
        self._previous: dict[int, object] = {}
        self._pair: tuple[socket.socket, socket.socket] | None = None
        self._old_wakeup = -1
        self._notifier: QSocketNotifier | None = None
        self._timer: QTimer | None = None
        if os.name == "posix":
            r, w = socket.socketpair()
            r.setblocking(False)
            w.setblocking(False)
            self._pair = (r, w)
            self._old_wakeup = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
            self._notifier = QSocketNotifier(r.fileno(), QSocketNotifier.Type.Read, self)
            self._notifier.activated.connect(self._drain)
        else:  # no socket notifier for the wakeup fd: let the interpreter in every 100 ms
            self._timer = QTimer(self)
            self._timer.setInterval(100)
            self._timer.timeout.connect(lambda: None)
            self._timer.start()
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)

    def _drain(self, *_: object) -> None:
        """Empty the socket; entering Python here has already run the handler."""
        if self._pair is not None:
            with contextlib.suppress(OSError):
                while self._pair[0].recv(64):
                    pass

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            log.warning("second %s while shutting down: exiting now", signal.Signals(signum).name)
            hard_exit(128 + signum)
        # not from inside the handler (it may interrupt any slot): from the loop
        QTimer.singleShot(0, lambda: self.signalled.emit(signum))

    def uninstall(self) -> None:
        for s, h in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, h)  # type: ignore[arg-type]
        self._previous.clear()
        if self._pair is not None:
            with contextlib.suppress(ValueError):
                signal.set_wakeup_fd(self._old_wakeup)
            if self._notifier is not None:
                self._notifier.setEnabled(False)
            for sock in self._pair:
                sock.close()
            self._pair = None
        if self._timer is not None:
            self._timer.stop()
