"""The one error road at a job's boundary: project errors pass, anything else is a bug.

A public job raises only ``LwqError`` subclasses. Where something else escapes (a bug, or a
library raising what lwq did not foresee), ``public_job`` writes its traceback to a log file
(``log_dir()``: ``cache_dir("logs")``, ``lwq-YYYYmmdd-HHMMSS-PID.log``) and raises
``InternalError`` naming the job and that file; nothing is silently converted into an input
error. The CLI's ``main`` uses the same log files for what escapes a command.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from .errors import InternalError, LwqError, shown
from .paths import cache_dir

P = ParamSpec("P")
R = TypeVar("R")


def log_dir() -> Path:
    """Where lwq keeps the logs of failed jobs (tracebacks, a crashed child's stderr)."""
    return cache_dir("logs")


def new_log_path(pid: int | None = None) -> Path:
    """A fresh ``lwq-YYYYmmdd-HHMMSS-PID.log`` in ``log_dir()`` (created), else in the system
    temp folder when the cache cannot be written."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"lwq-{stamp}-{pid if pid is not None else os.getpid()}"
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(100):
                p = folder / (f"{name}.log" if n == 0 else f"{name}-{n}.log")
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                    return p
    raise OSError("no folder to write a log file in")


def write_log(text: str, pid: int | None = None) -> Path | None:
    """Write ``text`` to a new log file; its path, or None if no log could be written."""
    try:
        p = new_log_path(pid)
        p.write_text(text, encoding="utf-8", errors="replace")
    except OSError:
        return None
    return p


def describe(exc: BaseException) -> str:
    """``TypeError: bad operand …`` on one line, cut short."""
    msg = str(exc)
    return shown(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__, 300)


def internal_error(
    job: str, exc: BaseException, *, details: str | None = None, what: str | None = None
) -> InternalError:
    """The ``InternalError`` for ``exc`` escaping ``job``; the traceback (or ``details``) goes
    to a log file the message names. ``what`` replaces the one-line description of ``exc``."""
    body = details if details is not None else "".join(traceback.format_exception(exc))
    log = write_log(f"lwq internal error in job {job}\n{body}")
    where = f"the traceback is in {log}" if log is not None else "no log file could be written"
    said = shown(what, 300) if what is not None else describe(exc)
    return InternalError(f"internal error in {job} ({said}): a bug in lwq; {where}")


def public_job(job: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a public job: ``LwqError`` passes unchanged; any other ``Exception`` becomes
    ``InternalError`` (traceback logged). ``KeyboardInterrupt`` and ``SystemExit`` pass."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except LwqError:
                raise
            except Exception as e:  # the boundary: a bug, logged and named, never hidden
                raise internal_error(job, e) from e

        return run

    return wrap
