"""One writer per project: a ``.lock`` file in the project folder.

The app holds the lock while a project is open (``ProjectLock.acquire``); the CLI's writes
into a project (``project.json``, a calibration) call ``check_unlocked`` first and refuse
while another live process holds it. The process that holds the lock may write: the app runs
the same core in-process. The lock records {pid, owner, host, since}; a lock whose process
is gone (or whose pid now belongs to a younger process) is stale and taken over. A lock made
on another host cannot be checked from here and counts as held.

The lock file is created whole (written to a temp file, then hard-linked into place, which
fails if the name exists), so a reader never sees a half-written lock; where the file system
has no hard links it is created with ``O_EXCL``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ..jobs.errors import InputError, OutputError

LOCK_FILE = ".lock"

#: lock files this process holds (resolved paths): a lock naming our pid that is not here
#: is a leftover of an earlier process that had our pid
_HELD: set[Path] = set()
_HELD_GUARD = threading.Lock()


class ProjectLocked(InputError):
    """The project is open in another process (the message names it)."""


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its holder."""

    pid: int
    owner: str
    host: str
    since: float  # time.time() when it was taken

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "owner": self.owner, "host": self.host, "since": self.since}


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK_FILE


def read_lock(folder: Path) -> LockInfo | None:
    """The lock's holder, or None if there is no lock or it is unreadable (stale)."""
    try:
        d = json.loads(lock_path(folder).read_text(encoding="utf-8"))
        info = LockInfo(int(d["pid"]), str(d["owner"]), str(d["host"]), float(d["since"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return info if info.pid > 0 else None


def _holder_runs(pid: int, since: float) -> bool:
    """Whether process ``pid`` runs and is the one that took the lock at ``since`` (a process
    started later reused a dead holder's pid). psutil knows both on every platform."""
    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: it runs, its start is unknown
        return True
    return started <= since + 2.0  # start times are rounded (whole seconds on Linux)


def _live(info: LockInfo, lock: Path) -> bool:
    """Whether the lock's holder still runs (another host's lock counts as live)."""
    if info.host != socket.gethostname():
        return True
    if info.pid == os.getpid():
        with _HELD_GUARD:
            return lock.resolve() in _HELD
    return _holder_runs(info.pid, info.since)


def _locked_error(folder: Path, info: LockInfo) -> ProjectLocked:
    where = "" if info.host == socket.gethostname() else f" on {info.host}"
    return ProjectLocked(
        f"{folder}: open in {info.owner} (pid {info.pid}{where}); close it there first"
    )


def check_unlocked(folder: Path) -> None:
    """Refuse (``ProjectLocked``) while another live process holds the project's lock; the
    holder itself, and everyone when there is no lock or a stale one, may write."""
    lock = lock_path(folder)
    info = read_lock(folder)
    if info is None:
        return
    if info.pid == os.getpid() and info.host == socket.gethostname():
        return  # this process (the app, running the core in-process)
    if _live(info, lock):
        raise _locked_error(Path(folder), info)


def _create(lock: Path, text: str) -> bool:
    """Create ``lock`` holding ``text`` if no such file exists; False if one does."""
    tmp = lock.with_name(f"{LOCK_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, lock)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here: O_EXCL (a reader may see it half-written)
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            return True
    except OSError as e:
        raise OutputError(f"{lock}: cannot create the project lock ({e.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


class ProjectLock:
    """The lock of one open project; ``release`` (or leaving the ``with`` block) frees it."""

    def __init__(self, folder: Path, info: LockInfo) -> None:
        self.folder = Path(folder)
        self.info = info
        self._released = False

    @classmethod
    def acquire(cls, folder: Path, owner: str) -> ProjectLock:
        """Take the lock of ``folder`` (which must exist) for ``owner`` ("lwq app", …).

        ``ProjectLocked`` names the holder where a live process has it (this process too,
        if it holds it already); a stale lock is taken over."""
        folder = Path(folder)
        lock = lock_path(folder)
        info = LockInfo(os.getpid(), owner, socket.gethostname(), time.time())
        text = json.dumps(info.to_json()) + "\n"
        for _ in range(5):
            if _create(lock, text):
                with _HELD_GUARD:
                    _HELD.add(lock.resolve())
                return cls(folder, info)
            old = read_lock(folder)
            if old is not None and _live(old, lock):
                raise _locked_error(folder, old)
            # stale: remove it unless another process replaced it meanwhile
            if read_lock(folder) == old:
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
        raise ProjectLocked(f"{folder}: the project lock keeps changing; try again")

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if self._released:
            return
        self._released = True
        lock = lock_path(self.folder)
        with _HELD_GUARD:
            _HELD.discard(lock.resolve())
        if read_lock(self.folder) == self.info:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    @property
    def held(self) -> bool:
        return not self._released

    def __enter__(self) -> ProjectLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
