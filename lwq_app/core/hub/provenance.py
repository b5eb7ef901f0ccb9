"""Where a local model came from: the Hub repo and commit, kept beside lwq's cache.

A download records its snapshot folder (and its GGUF); a conversion records its output with
the same source; publishing asks ``source_of`` for the card's ``base_model``. The record is one
JSON file, ``$LWQ_CACHE_DIR/hub/sources.json``, rewritten atomically; paths are absolute, not
resolved (a snapshot's files are symlinks into ``blobs/``, shared between snapshots).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.atomic import atomic_write_text
from ..jobs.paths import cache_dir

_LOCK = threading.Lock()


@dataclass(frozen=True)
class Source:
    """A Hub repo at a commit (``revision`` as the user asked for it)."""

    repo: str
    commit: str
    revision: str = "main"
    repo_type: str = "model"


def sources_path() -> Path:
    return cache_dir("hub") / "sources.json"


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _load() -> dict[str, Any]:
    try:
        data = json.loads(sources_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    sources = data.get("sources") if isinstance(data, dict) else None
    return sources if isinstance(sources, dict) else {}


def record_source(
    path: str | os.PathLike[str],
    repo: str,
    commit: str,
    revision: str = "main",
    repo_type: str = "model",
) -> None:
    """Remember that ``path`` (a folder or a file) holds ``repo`` at ``commit``."""
    with _LOCK, _file_lock():
        sources = _load()
        sources[_key(path)] = {
            "repo": repo,
            "commit": commit,
            "revision": revision,
            "repo_type": repo_type,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        out = sources_path()
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps({"version": 1, "sources": sources}, indent=1) + "\n")


def source_of(path: str | os.PathLike[str]) -> Source | None:
    """The source recorded for ``path``, or for the nearest folder above it; None if none."""
    sources = _load()
    p = Path(_key(path))
    for candidate in (p, *p.parents):
        d = sources.get(str(candidate))
        if isinstance(d, dict) and isinstance(d.get("repo"), str) and d.get("commit"):
            return Source(
                d["repo"],
                str(d["commit"]),
                str(d.get("revision") or "main"),
                str(d.get("repo_type") or "model"),
            )
    return None


@contextlib.contextmanager
def _file_lock() -> Any:
    """Serialise writers across processes (POSIX ``flock``; elsewhere the thread lock only)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = sources_path().with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
