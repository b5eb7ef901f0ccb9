"""Run a core function in a child process, with progress, cancel and crash isolation.

The child is started with the ``spawn`` method (no inherited threads or Qt state). It sends
``Progress`` events and finally a result or an error over a pipe. Cancel kills the child
(SIGKILL); a native crash in the child becomes a ``JobFailed`` in the parent naming the job,
its subject (the model file) and, where known, the last item it reported (the tensor being
quantized). The child's stderr (ggml's ``GGML_ASSERT`` text, a debugger's backtrace, a Python
fault dump) goes to a log file, never to the terminal: the error quotes its last meaningful
line and names the file (kept in ``boundary.log_dir()`` only when the child failed that way).
A Python exception other than an ``LwqError`` in the child becomes ``InternalError``.

A child dies with its parent: on Linux it asks the kernel for SIGKILL when the parent goes
(``prctl(PR_SET_PDEATHSIG)``) and exits at once if the parent is already gone, so an app that
is killed (``kill -9``, a crash) leaves no orphan still writing a file. (The kernel ties the
signal to the parent *thread* that started the child; ``run_in_child`` blocks that thread
until the child ends, so the two lifetimes are the same.)
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import importlib
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from typing import Any

from .boundary import internal_error, new_log_path
from .errors import Cancelled, JobFailed, LwqError, shown
from .progress import POLL_INTERVAL, CancelToken, Progress, ProgressSink


class ChildContext:
    """Given to the function running in the child: report progress with ``progress(p)``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def progress(self, p: Progress) -> None:
        self._conn.send(("progress", p))


def _redirect_stderr(log_path: str | None) -> None:
    """Send fd 2 (native code's stderr, a debugger's backtrace) and Python's fault dumps to
    ``log_path``."""
    if log_path is None:
        return
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    with contextlib.suppress(Exception):  # stderr may be None in a GUI child: nothing to flush
        sys.stderr.flush()
    faulthandler.enable(file=2, all_threads=True)


#: added to the niceness of every child started from now on (``set_child_niceness``)
_niceness = 0


def set_child_niceness(n: int) -> None:
    """Run the children started from now on ``n`` steps nicer (POSIX; ignored elsewhere).

    The desktop app sets this: llama.cpp's compute threads take every core, and at the same
    priority they kept the GUI thread off the CPU for up to 300 ms on 2 cores (a 10 ms
    heartbeat saw it while a child loaded a model). A nicer child loses nothing on an idle
    machine; the CLI leaves it at 0."""
    global _niceness
    _niceness = max(0, int(n))


def child_niceness() -> int:
    """How much nicer the children started now run (``set_child_niceness``): for a job that
    starts its child without ``run_in_child`` (the converter's isolated interpreter)."""
    return _niceness


#: Linux's ``prctl`` option: the signal a process gets when its parent dies
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int | None) -> None:
    """Ask for SIGKILL when the parent dies (Linux), then check it has not died already: a
    parent killed before the ``prctl`` took effect left us to another process."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent is gone: no one would read our answer


def _child_main(
    target: str,
    kwargs: dict[str, Any],
    conn: Connection,
    log_path: str | None = None,
    niceness: int = 0,
    parent_pid: int | None = None,
) -> None:
    _die_with_parent(parent_pid)
    try:
        if niceness and hasattr(os, "nice"):
            os.nice(niceness)
        _redirect_stderr(log_path)
        module, func = target.split(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), func)
        result = fn(ChildContext(conn), **kwargs)
        conn.send(("result", result))
    except LwqError as e:
        conn.send(("error", type(e).__name__, str(e)))
    except BaseException as e:
        conn.send(("crash", type(e).__name__, str(e), traceback.format_exc()))
    finally:
        conn.close()


_ERRORS: dict[str, type[LwqError]] = {}


def _error_class(name: str) -> type[LwqError]:
    if not _ERRORS:
        from . import errors

        for v in vars(errors).values():
            if isinstance(v, type) and issubclass(v, LwqError):
                _ERRORS[v.__name__] = v
    return _ERRORS.get(name, JobFailed)


_ENV_LOCK = threading.Lock()
#: the child's ggml threads own the cores; OpenBLAS threads busy-wait after each numpy matmul
#: and slowed the next llama_decode by ~10 %, so children run BLAS single-threaded (the
#: evaluation spreads its numpy work over its own thread pool instead)
_CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1"}


def _start_single_blas(proc: Any) -> None:
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in _CHILD_ENV}
        os.environ.update(_CHILD_ENV)
        try:
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def run_in_child(
    target: str,
    kwargs: dict[str, Any],
    *,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
    on_start: Callable[[int], None] | None = None,
    job: str | None = None,
    subject: str | os.PathLike[str] | None = None,
    item_kind: str = "",
    niceness: int | None = None,
) -> Any:
    """Run ``module:function(ctx, **kwargs)`` in a child process and return its result.

    ``niceness``: how much nicer than this process the child runs (None: the module's
    default, ``set_child_niceness``; 0: the same priority, as a speed test needs).

    Raises ``Cancelled`` (child killed, gone) when ``cancel`` is set, the child's own
    ``LwqError`` subclass for errors it reports, ``InternalError`` for any other Python
    exception in the child and ``JobFailed`` if it dies without answering. ``job`` (default:
    the function's name), ``subject`` (the file it works on) and the last progress item
    (``item_kind`` says what it is, e.g. "tensor") name what crashed in that message.
    """
    name = job or target.rpartition(":")[2]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    log = _ChildLog()
    nice = _niceness if niceness is None else max(0, int(niceness))
    proc = ctx.Process(
        target=_child_main,
        args=(target, kwargs, child, log.path, nice, os.getpid()),
        daemon=True,
    )
    try:
        _start_single_blas(proc)
    except BaseException:
        log.discard()
        raise
    child.close()
    if on_start is not None and proc.pid is not None:
        on_start(proc.pid)
    last_item = [""]

    def report(p: Progress) -> None:
        if p.item:
            last_item[0] = p.item
        if progress is not None:
            progress(p)

    def died(code: int | None) -> JobFailed:
        kept = log.keep(proc.pid)
        what = f"{name} on {subject}" if subject else name
        if last_item[0]:
            what += f" at {item_kind + ' ' if item_kind else ''}{shown(last_item[0], 120)}"
        quote = _last_meaningful_line(kept)
        said = f": {quote}" if quote else ""
        where = f"; the child's log is {kept}" if kept is not None else ""
        return JobFailed(f"{what}: {_death_message(code)}{said}; no output was written{where}")

    # The parent sleeps until a message, the child's exit or cancel: no timer. On a small
    # machine every wake-up of the parent preempts a compute thread of the child, and its
    # OpenMP siblings then wait for it at the next barrier (a 50 Hz waker thread slowed tg128
    # by ~3 %; the 10 Hz poll this replaces woke the parent ~11 times a second).
    sources: list[Any] = [parent, proc.sentinel]
    timeout: float | None = None
    if cancel is not None:
        fd = cancel.wait_fd()
        if fd is None:  # no descriptor to wait on (Windows): poll the flag instead
            timeout = POLL_INTERVAL
        else:
            sources.append(fd)
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                _kill(proc)
                raise Cancelled("cancelled")
            ready = mp_connection.wait(sources, timeout)
            if cancel is not None and cancel.cancelled:
                continue
            if parent in ready or parent.poll(0):
                try:
                    msg = parent.recv()
                except EOFError:
                    proc.join(5)
                    raise died(proc.exitcode) from None
                kind = msg[0]
                if kind == "progress":
                    report(msg[1])
                elif kind == "result":
                    proc.join(10)
                    return msg[1]
                elif kind == "error":
                    proc.join(10)
                    raise _error_class(msg[1])(msg[2])
                else:
                    proc.join(10)
                    raise _child_bug(name, msg, log.tail())
            elif proc.sentinel in ready:
                proc.join(5)
                raise died(proc.exitcode)
    finally:
        if proc.is_alive():
            _kill(proc)
        parent.close()
        log.discard()


class _ChildLog:
    """The child's stderr: a temp file, moved into the log folder only when it matters."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._kept: str | None = None
        with contextlib.suppress(OSError):
            fd, self.path = tempfile.mkstemp(prefix="lwq-child-", suffix=".log")
            os.close(fd)

    def tail(self, limit: int = 64 << 10) -> str:
        p = self._kept or self.path
        if p is None:
            return ""
        try:
            with open(p, "rb") as f:
                f.seek(max(0, os.path.getsize(p) - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def keep(self, pid: int | None) -> str | None:
        """Move the log into ``log_dir()`` (the temp file if that fails); its path."""
        if self._kept is not None or self.path is None:
            return self._kept
        try:
            dest = new_log_path(pid)
            shutil.move(self.path, dest)
            self._kept = str(dest)
        except OSError:
            self._kept = self.path
        return self._kept

    def discard(self) -> None:
        if self.path is not None and self._kept is None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


#: a line a native abort or a fault dump leaves, best first
_MEANINGFUL = (
    re.compile(r"GGML_ASSERT|GGML_ABORT|ggml_abort"),
    re.compile(r"\b(error|failed|fatal|assert(ion)?|terminate|abort(ed)?)\b", re.IGNORECASE),
)
#: debugger and fault-dump noise: frames, thread lists, gdb's chatter
_NOISE = re.compile(
    r"^\s*(#\d|\[New |\[Thread |\[Inferior |Thread 0x|Current thread|  File |<frame|"
    r"Extension modules|Using host libthread_db|warning: |0x[0-9a-f]+ in |Fatal Python error)"
)


def log_tail_lines(log: str | os.PathLike[str], limit: int = 64 << 10) -> list[str]:
    """The non-empty lines, stripped, of the last ``limit`` bytes of a child's log (where why
    it died is written); none when it cannot be read."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - limit))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return []
    return [ln for ln in lines if ln]


def _last_meaningful_line(log: str | None) -> str:
    """The line of the child's log that says why it died (the GGML_ASSERT line), escaped."""
    if log is None:
        return ""
    lines = log_tail_lines(log)
    for pattern in _MEANINGFUL:
        for ln in reversed(lines):
            if pattern.search(ln) and not _NOISE.match(ln):
                return shown(ln, 300)
    fatal = [ln for ln in lines if ln.startswith("Fatal Python error")]
    return shown(fatal[-1], 300) if fatal else ""


def _child_bug(job: str, msg: tuple[Any, ...], stderr: str) -> LwqError:
    """A Python exception other than ``LwqError`` in the child: an ``InternalError`` whose log
    holds the child's traceback (and its stderr)."""
    type_name, text = str(msg[1]), str(msg[2])
    tb = str(msg[3]) if len(msg) > 3 else text
    what = f"{type_name}: {text}" if text else type_name
    details = f"in the child process:\n{tb}\n--- child stderr ---\n{stderr}"
    return internal_error(job, RuntimeError(what), details=details, what=what + " in the child")


def _kill(proc: Any) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    deadline = time.monotonic() + 5
    while proc.is_alive() and time.monotonic() < deadline:
        proc.join(0.01)


def _death_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"native job crashed ({name})"
    return f"native job exited with code {code} without a result"
