"""Where downloaded bytes live: the Hugging Face cache layout, and lwq's partial area.

The cache is huggingface_hub's own (``HF_HUB_CACHE``, else ``HF_HOME/hub``):
``models--org--name/blobs/<etag>``, ``snapshots/<commit>/<path>`` (a relative symlink to the
blob) and ``refs/<revision>`` (the commit), so ``try_to_load_from_cache``, transformers and
llama.cpp's tools find what lwq downloaded, and lwq finds what they did.

The partial area (``$LWQ_CACHE_DIR/partial/<repo folder>/<etag>.part``) holds the bytes of
unfinished downloads, each with a JSON sidecar (``<etag>.json``: the ``RemoteFile`` and its URL)
written before its first byte, so a cancel, a crash or a restart loses nothing and the app can
list (``pending_downloads``) what to Resume or Discard (``discard_pending``).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..jobs.paths import cache_dir
from .access import HubAccess


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a commit, as the Hub announces it. ``sha256`` is the LFS oid (None
    for a small file kept in git); ``etag`` names the blob in the Hugging Face cache (the sha256
    of an LFS file, the git blob sha1 of another)."""

    repo: str
    repo_type: str  # "model" | "dataset"
    path: str
    revision: str  # what the user asked for (a branch, tag or commit)
    commit: str  # what it resolved to (40 hex)
    size: int
    sha256: str | None
    etag: str

    def url(self, endpoint: str) -> str:
        """The ``resolve`` URL at the commit (so the bytes cannot change under a resume)."""
        return resolve_url(endpoint, self.repo, self.path, self.repo_type, self.commit)


def resolve_url(endpoint: str, repo: str, path: str, repo_type: str, revision: str) -> str:
    """``ENDPOINT/[datasets/]REPO/resolve/REVISION/PATH``, as ``hf_hub_url`` builds it."""
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"{endpoint}/{prefix}{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


@dataclass(frozen=True)
class PendingDownload:
    """An unfinished download in the partial area: Resume continues it, Discard drops it."""

    repo: str
    repo_type: str
    revision: str
    commit: str
    files: tuple[str, ...]
    have_bytes: int
    total_bytes: int


# --- the Hugging Face cache layout ------------------------------------------------------------


def repo_folder(cache: Path, repo: str, repo_type: str = "model") -> Path:
    """``models--org--name`` (``datasets--…``) under the Hugging Face cache."""
    return cache / "--".join([f"{repo_type}s", *repo.split("/")])


def snapshot_path(cache: Path, f: RemoteFile) -> Path:
    return repo_folder(cache, f.repo, f.repo_type) / "snapshots" / f.commit / f.path


def cached_file(cache: Path, f: RemoteFile) -> Path | None:
    """The file's snapshot path if it is in the cache already (with the announced size)."""
    p = snapshot_path(cache, f)
    try:
        return p if p.is_file() and p.stat().st_size == f.size else None
    except OSError:
        return None


def blob_path(cache: Path, f: RemoteFile) -> Path:
    return repo_folder(cache, f.repo, f.repo_type) / "blobs" / f.etag


# --- the partial area -------------------------------------------------------------------------


def partial_dir() -> Path:
    """lwq's partial area (``$LWQ_CACHE_DIR/partial``)."""
    return cache_dir("partial")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def partial_paths(root: Path, f: RemoteFile) -> tuple[Path, Path]:
    """The partial file and its sidecar for ``f``."""
    folder = root / repo_folder(Path(), f.repo, f.repo_type).name
    return folder / f"{_safe(f.etag)}.part", folder / f"{_safe(f.etag)}.json"


def sidecar(f: RemoteFile, endpoint: str) -> dict[str, Any]:
    return {**asdict(f), "url": f.url(endpoint)}


def read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def have_bytes(access: HubAccess, files: Iterable[RemoteFile]) -> int:
    """Bytes of ``files`` already here: in the cache, or received into the partial area."""
    root = partial_dir()
    return sum(
        f.size
        if cached_file(access.cache_dir, f)
        else min(file_size(partial_paths(root, f)[0]), f.size)
        for f in files
    )


def pending_downloads() -> list[PendingDownload]:
    """What the partial area holds, one entry per repo and revision (never the network)."""
    groups: dict[tuple[str, str, str, str], list[tuple[str, int, int]]] = {}
    root = partial_dir()
    for meta in sorted(root.glob("*/*.json")) if root.is_dir() else []:
        d = read_sidecar(meta)
        if d is None or not {"repo", "repo_type", "revision", "commit", "path", "size"} <= set(d):
            continue
        key = (str(d["repo"]), str(d["repo_type"]), str(d["revision"]), str(d["commit"]))
        have = min(file_size(meta.with_suffix(".part")), int(d["size"]))
        groups.setdefault(key, []).append((str(d["path"]), have, int(d["size"])))
    return [
        PendingDownload(
            repo,
            repo_type,
            revision,
            commit,
            tuple(sorted(p for p, _, _ in rows)),
            sum(h for _, h, _ in rows),
            sum(s for _, _, s in rows),
        )
        for (repo, repo_type, revision, commit), rows in sorted(groups.items())
    ]


def discard_pending(repo: str, revision: str | None = None, repo_type: str = "model") -> int:
    """Delete the partial files of ``repo`` (at ``revision``, else all); the bytes freed."""
    folder = partial_dir() / repo_folder(Path(), repo, repo_type).name
    freed = 0
    for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        d = read_sidecar(meta) or {}
        if revision is not None and revision not in (d.get("revision"), d.get("commit")):
            continue
        part = meta.with_suffix(".part")
        freed += file_size(part)
        for p in (part, meta):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty
    return freed


def check_snapshot(folder: Path, cache: Path) -> None:
    """``InputError`` unless ``folder`` is a snapshot folder of a repo in the cache ``cache``."""
    from ..jobs.errors import InputError

    folder, root = Path(folder).resolve(), Path(cache).resolve()
    if folder.parent.name != "snapshots" or folder.parent.parent.parent != root:
        raise InputError(
            f"{folder}: not a downloaded snapshot in the Hugging Face cache ({root}); "
            "lwq deletes only files the cache holds"
        )


def delete_snapshot(folder: Path, cache: Path) -> int:
    """Delete a downloaded snapshot (``<cache>/models--org--name/snapshots/<commit>``) from the
    Hugging Face cache, with the blobs no other snapshot uses: the safetensors a conversion no
    longer needs. Returns the bytes freed. Refuses (``InputError``) a folder that is not a
    snapshot in ``cache``: lwq deletes only what the cache holds."""
    from huggingface_hub import scan_cache_dir

    check_snapshot(folder, cache)
    strategy = scan_cache_dir(Path(cache).resolve()).delete_revisions(Path(folder).resolve().name)
    freed = int(strategy.expected_freed_size)
    strategy.execute()
    return freed
