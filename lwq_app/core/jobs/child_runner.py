"""Run a core function in a child process, with progress, cancel and crash isolation.

The child is started with the ``spawn`` method (no inherited threads or Qt state). It sends
``Progress`` events and finally a result or an error over a pipe. Cancel kills the child
(SIGKILL); a native crash in the child becomes a ``JobFailed`` in the parent.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Connection
from typing import Any

from .errors import Cancelled, JobFailed, LwqError
from .progress import POLL_INTERVAL, CancelToken, Progress, ProgressSink


class ChildContext:
    """Given to the function running in the child: report progress with ``progress(p)``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def progress(self, p: Progress) -> None:
        self._conn.send(("progress", p))


def _child_main(target: str, kwargs: dict[str, Any], conn: Connection) -> None:
    try:
        module, func = target.split(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), func)
        result = fn(ChildContext(conn), **kwargs)
        conn.send(("result", result))
    except LwqError as e:
        conn.send(("error", type(e).__name__, str(e)))
    except BaseException as e:
        conn.send(("crash", type(e).__name__, f"{e}\n{traceback.format_exc()}"))
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
) -> Any:
    """Run ``module:function(ctx, **kwargs)`` in a child process and return its result.

    Raises ``Cancelled`` (child killed, gone) when ``cancel`` is set, the child's own
    ``LwqError`` subclass for errors it reports, and ``JobFailed`` if it dies without answering.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(target, kwargs, child), daemon=True)
    _start_single_blas(proc)
    child.close()
    if on_start is not None and proc.pid is not None:
        on_start(proc.pid)
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
                    raise JobFailed(_death_message(proc.exitcode)) from None
                kind = msg[0]
                if kind == "progress":
                    if progress is not None:
                        progress(msg[1])
                elif kind == "result":
                    proc.join(10)
                    return msg[1]
                elif kind == "error":
                    proc.join(10)
                    raise _error_class(msg[1])(msg[2])
                else:
                    proc.join(10)
                    raise JobFailed(f"job failed in child process: {msg[1]}: {msg[2]}")
            elif proc.sentinel in ready:
                proc.join(5)
                raise JobFailed(_death_message(proc.exitcode))
    finally:
        if proc.is_alive():
            _kill(proc)
        parent.close()


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
        return f"native job crashed ({name}); no output was written"
    return f"native job exited with code {code} without a result; no output was written"
