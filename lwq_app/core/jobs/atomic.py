"""Safe output: temp file in the destination folder, then an atomic rename.

A failed or cancelled job never leaves a partial file under the output name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

TMP_SUFFIX = ".lwq-tmp"


def check_writable_dir(path: Path) -> None:
    """Raise ``OutputError`` naming ``path`` if its folder does not exist or is not writable."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise OutputError(f"{path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {folder} is not writable")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder")
    temp_path_for(path).unlink()  # a real probe: permissions alone miss read-only mounts and root


def check_free_space(path: Path, needed: int, margin: int = 16 << 20) -> None:
    """Raise ``OutputError`` if the output's file system lacks ``needed`` bytes (plus a margin)."""
    folder = path.parent if str(path.parent) else Path(".")
    free = shutil.disk_usage(folder).free
    if free < needed + margin:
        raise OutputError(
            f"{path}: not enough disk space: need {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB free on {folder}"
        )


def temp_path_for(path: Path) -> Path:
    """A fresh, unique temp name beside ``path`` (same file system, so rename is atomic)."""
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent or "."
        )
    except OSError as e:
        raise OutputError(f"{path}: cannot write in {path.parent}: {e.strerror}") from None
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temp path; on success rename it to ``path``, on any error remove it."""
    check_writable_dir(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
