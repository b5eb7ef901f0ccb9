"""Download a model repo from the Hub: what lwq needs of it, resumable and verified.

``plan_download`` asks the Hub for the repo's files (``model_info(files_metadata=True)``: sizes
and each LFS file's sha256) and picks what lwq needs (``repo_files.select_files``);
``download_model`` checks the disk, hands the files to the one downloader
(``transfer.download_files``: a child process, partial files kept for Resume, sha256 verified,
the standard Hugging Face cache) and records where the result came from (``provenance``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.boundary import public_job
from ..jobs.errors import DownloadError, InputError
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from .access import HubAccess, hub_access, hub_errors
from .provenance import record_source
from .repo_files import Selection, select_files
from .transfer import (
    RemoteFile,
    check_space,
    download_files,
    have_bytes,
    repo_folder,
    resolve_file,
)

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
#: seconds the model-info request may take (it runs in the job's thread, not the child)
INFO_TIMEOUT = 30.0


@dataclass(frozen=True)
class DownloadRequest:
    """``lwq hub download REPO [FILE|GLOB…] [--revision R]``; ``token`` overrides the saved one."""

    repo: str
    patterns: tuple[str, ...] = ()
    revision: str = "main"
    token: str | None = None


@dataclass(frozen=True)
class DownloadPlan:
    """What a download will fetch: the repo at ``commit``, the chosen files and their bytes
    (``have_bytes`` already here: cached, or received by an earlier, unfinished download)."""

    repo: str
    commit: str
    selection: Selection
    files: tuple[RemoteFile, ...]
    total_bytes: int
    have_bytes: int

    @property
    def needed_bytes(self) -> int:
        return self.total_bytes - self.have_bytes


@dataclass(frozen=True)
class DownloadResult:
    """The local model: the snapshot folder (safetensors, or files picked by pattern) or the
    first GGUF shard."""

    repo: str
    commit: str
    path: Path
    files: tuple[Path, ...]
    downloaded_bytes: int
    resumed_bytes: int
    kind: str  # "safetensors" | "gguf" | "none" (patterns picked no weights)


def check_request(request: DownloadRequest) -> None:
    """``InputError`` for a repo id or revision the Hub could not have."""
    if not _REPO.match(request.repo) or ".." in request.repo or request.repo.endswith(".git"):
        raise InputError(f"{request.repo!r} is not a Hub repo id: give it as ORG/NAME")
    if not request.revision.strip() or ".." in request.revision:
        raise InputError(f"{request.revision!r} is not a revision (a branch, tag or commit)")


def plan_download(
    request: DownloadRequest, access: HubAccess, *, timeout: float = INFO_TIMEOUT
) -> DownloadPlan:
    """The files ``request`` would fetch, as the Hub lists them now (one request; a HEAD more
    for a gated repo without a token, so that it says so before the download starts)."""
    check_request(request)
    repo = request.repo
    with hub_errors(repo, access):
        info = access.api().model_info(
            repo, revision=request.revision, files_metadata=True, timeout=timeout
        )
    siblings = {s.rfilename: s for s in (info.siblings or [])}
    selection = select_files(list(siblings), request.patterns)
    if not selection.files:
        raise InputError(f"{repo}: {selection.note}")
    commit = str(info.sha or "")
    files = tuple(
        _remote(access, repo, request.revision, commit, siblings[n]) for n in selection.files
    )
    if info.gated and not access.token and files:
        resolve_file(access, repo, files[0].path, revision=commit, timeout=timeout)  # says gated
    return DownloadPlan(
        repo,
        commit,
        selection,
        files,
        sum(f.size for f in files),
        have_bytes(access, files),
    )


def _remote(access: HubAccess, repo: str, revision: str, commit: str, s: Any) -> RemoteFile:
    sha256 = s.lfs.sha256 if s.lfs else None
    size = s.size if s.size is not None else (s.lfs.size if s.lfs else None)
    etag = sha256 or s.blob_id
    if size is None or not etag or not commit:  # not in the listing: ask for the file itself
        head = resolve_file(access, repo, s.rfilename, revision=commit or revision)
        return RemoteFile(
            repo, "model", s.rfilename, revision, head.commit, head.size, head.sha256, head.etag
        )
    return RemoteFile(repo, "model", s.rfilename, revision, commit, int(size), sha256, etag)


def conversion_note(plan: DownloadPlan) -> str:
    """What the disk must hold after the download, for the message of a failed space check."""
    if plan.selection.kind != "safetensors":
        return ""
    gb = plan.total_bytes / 1e9
    return (
        f"converting it to an F16 GGUF then needs about {gb:.1f} GB more (about the size of "
        "the safetensors, which can be deleted after the conversion)"
    )


@public_job("download")
def download_model(
    request: DownloadRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> DownloadResult:
    """Download what lwq needs of a model repo into the Hugging Face cache (see the module).

    ``DOWNLOAD`` then ``VERIFY`` progress in bytes. Cancel kills the download; the bytes
    received stay in lwq's partial area, and the next call (Resume) continues from them.
    ``DownloadError`` for a gated, missing or private repo, a refused token or a damaged file;
    ``OutputError`` when the disk cannot hold it (checked before any byte); ``InputError`` for
    a repo with nothing lwq reads, or a pattern that matches nothing.
    """
    check(cancel)
    check_request(request)
    access = hub_access(request.token)
    if access.offline:
        return _from_cache(request, access)
    progress(Progress(Phase.DOWNLOAD, 0, 1, request.repo))  # alive before the first answer
    plan = plan_download(request, access)
    check(cancel)
    check_space(access, plan.files, note=conversion_note(plan))
    transfer = download_files(access, plan.files, progress=progress, cancel=cancel)
    snapshot = repo_folder(access.cache_dir, plan.repo) / "snapshots" / plan.commit
    path = transfer.paths[0] if plan.selection.kind == "gguf" else snapshot
    record_source(snapshot, plan.repo, plan.commit, request.revision)
    return DownloadResult(
        plan.repo,
        plan.commit,
        path,
        transfer.paths,
        transfer.downloaded_bytes,
        transfer.resumed_bytes,
        plan.selection.kind,
    )


def _from_cache(request: DownloadRequest, access: HubAccess) -> DownloadResult:
    """Offline (``HF_HUB_OFFLINE``): the snapshot already in the cache, chosen the same way."""
    folder = repo_folder(access.cache_dir, request.repo)
    ref = folder / "refs" / request.revision
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else request.revision
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        raise DownloadError(
            f"{request.repo} (revision {request.revision}) is not in the Hugging Face cache "
            f"({access.cache_dir}) and HF_HUB_OFFLINE is set: unset it to download"
        )
    names = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    selection = select_files(names, request.patterns)
    if not selection.files:
        raise InputError(f"{request.repo}: {selection.note}")
    files = tuple(snapshot / n for n in selection.files)
    path = files[0] if selection.kind == "gguf" else snapshot
    return DownloadResult(request.repo, commit, path, files, 0, 0, selection.kind)
