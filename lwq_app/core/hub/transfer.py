"""The one downloader: every file lwq takes from the Hub (models, and the datasets of
``lwq fetch``) comes through ``download_files``.

Why not ``hf_hub_download``: huggingface_hub (2.4) retries with ``Range`` only within one call,
into a randomly named ``*.incomplete`` it deletes on failure, so nothing survives a cancel, a
crash or a restart; and it checks sizes only, so a same-size damaged file is accepted. Here:

* the transfer runs in ONE child process (``run_in_child``): cancel kills it, whatever it is
  blocked in;
* bytes go to lwq's partial area, ``cache_dir("partial")/<repo folder>/<etag>.part``, with a
  JSON sidecar (url, commit, size, sha256, etag) written before the first byte; never under a
  final name, never in the Hugging Face cache's ``blobs``/``snapshots``. The next call (after
  a cancel, a crash, a restart) continues with ``Range: bytes=<have>-``; ``pending_downloads``
  lists what is there for the app's Resume, ``discard_pending`` drops it;
* a ``VERIFY`` phase hashes every file (sha256 of an LFS file, the git blob sha1 of a small
  one) and compares it with what the Hub announced: a mismatch is refused and the bytes
  removed (``DownloadError`` naming the file and both digests);
* verified files are placed in the standard Hugging Face cache layout
  (``models--org--name/blobs/<etag>``, ``snapshots/<commit>/<path>`` a relative symlink to the
  blob, ``refs/<revision>``), where ``try_to_load_from_cache``, ``hf_hub_download(...,
  local_files_only=True)`` and transformers find them.

Transport: plain HTTP(S) ``GET`` of the ``resolve/<commit>/<path>`` URL through huggingface_hub's
own ``httpx2`` session (its proxies, its user agent). On huggingface.co large files live on Xet
storage; the Hub's resolve URL redirects them to its HTTP bridge (``cas-bridge``), which honours
``Range``, so resume and verification stay lwq's. ``hf_xet`` is not used for downloads (it has
no cancel and no resume across calls); the tests exercise the same HTTP path against a loopback
Hub. huggingface.co serves files over 50 GB only through Xet, so those are refused by the Hub.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.atomic import atomic_write_text, check_free_space
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import DownloadError, OutputError
from ..jobs.progress import (
    CancelToken,
    Phase,
    Phases,
    Progress,
    ProgressSink,
    Throttle,
    check,
    no_progress,
)
from .access import HubAccess, apply_to_environment, hub_errors
from .byte_progress import Heartbeat
from .byte_progress import TransferRate as TransferRate  # for the CLI bar and the GUI
from .cache_layout import PendingDownload as PendingDownload  # the API is this module's
from .cache_layout import (
    RemoteFile,
    blob_path,
    cached_file,
    file_size,
    partial_dir,
    partial_paths,
    read_sidecar,
    repo_folder,
    resolve_url,
    sidecar,
    snapshot_path,
)
from .cache_layout import discard_pending as discard_pending
from .cache_layout import have_bytes as have_bytes
from .cache_layout import pending_downloads as pending_downloads

#: transient failures (a dropped connection, a 5xx) retried within one call before giving up;
#: what was received is kept either way
RETRIES = 3
#: seconds before retry n (n * RETRY_WAIT)
RETRY_WAIT = 0.5
#: bytes hashed per read in the VERIFY phase
HASH_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_TRANSIENT = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class TransferResult:
    """The files' final paths (snapshot paths, in the order given) and what moved."""

    paths: tuple[Path, ...]
    downloaded_bytes: int  # received in this call
    resumed_bytes: int  # already in the partial area when this call started


# --- resolving one file (a HEAD request) ------------------------------------------------------


def resolve_file(
    access: HubAccess,
    repo: str,
    path: str,
    *,
    repo_type: str = "model",
    revision: str = "main",
    timeout: float = 30.0,
) -> RemoteFile:
    """One file as the Hub announces it (``HEAD`` of its resolve URL: commit, size, etag; an
    etag of 64 hex digits is the LFS sha256)."""
    from huggingface_hub import get_hf_file_metadata

    url = resolve_url(access.endpoint, repo, path, repo_type, revision)
    with hub_errors(f"{repo}: {path}", access):
        meta = get_hf_file_metadata(
            url, token=access.token or False, timeout=timeout, endpoint=access.endpoint
        )
    if not meta.etag or not meta.commit_hash or meta.size is None:
        raise DownloadError(
            f"{repo}: {path} on {access.endpoint}: the Hub's answer lacks the file's "
            "commit, size or etag (a proxy in between?)"
        )
    etag = meta.etag.lower()
    return RemoteFile(
        repo,
        repo_type,
        path,
        revision,
        meta.commit_hash,
        int(meta.size),
        etag if _SHA256.fullmatch(etag) else None,
        etag,
    )


# --- the job ----------------------------------------------------------------------------------


def check_space(access: HubAccess, files: Sequence[RemoteFile], *, note: str = "") -> None:
    """``OutputError`` (with ``note`` appended) unless the partial area, and the Hugging Face
    cache where it is on another file system, can hold what is still to come."""
    todo = [f for f in files if cached_file(access.cache_dir, f) is None]
    part = partial_dir()
    remaining = sum(f.size - min(file_size(partial_paths(part, f)[0]), f.size) for f in todo)
    needs = {part: remaining}
    try:
        part.mkdir(parents=True, exist_ok=True)
        access.cache_dir.mkdir(parents=True, exist_ok=True)
        if part.stat().st_dev != access.cache_dir.stat().st_dev:  # placing copies, not renames
            needs[access.cache_dir] = sum(f.size for f in todo)
    except OSError as e:
        raise OutputError(f"cannot create {e.filename}: {e.strerror}") from None
    for folder, need in needs.items():
        try:
            check_free_space(folder / "download", need)
        except OutputError as e:
            raise OutputError(f"{e}{'; ' + note if note else ''}") from None


def download_files(
    access: HubAccess,
    files: Sequence[RemoteFile],
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
    retries: int = RETRIES,
) -> TransferResult:
    """Download, verify and place ``files`` (see the module's docstring), in one child process.

    Progress: ``DOWNLOAD`` in bytes over all files not yet cached (``done`` counts the bytes
    resumed), then ``VERIFY`` in bytes. ``Cancelled`` kills the child; what it received stays
    in the partial area for the next call. ``DownloadError`` names the repo and file;
    ``OutputError`` when the disk is too small (checked before any byte).
    """
    check(cancel)
    if not files:
        return TransferResult((), 0, 0)
    if access.offline:
        missing = [f for f in files if cached_file(access.cache_dir, f) is None]
        if missing:
            raise DownloadError(
                f"{missing[0].repo}: {missing[0].path} is not in the Hugging Face cache "
                f"({access.cache_dir}) and HF_HUB_OFFLINE is set"
            )
    check_space(access, files)
    result: TransferResult = run_in_child(
        f"{__name__}:transfer_child",
        {"access": access, "files": list(files), "retries": retries, "partial": str(partial_dir())},
        progress=progress,
        cancel=cancel,
        job="download",
        subject=files[0].repo,
        item_kind="file",
    )
    return result


def transfer_child(
    ctx: ChildContext, *, access: HubAccess, files: list[RemoteFile], retries: int, partial: str
) -> TransferResult:
    """The child side of ``download_files``."""
    apply_to_environment(access)  # before huggingface_hub is imported here
    with Heartbeat(ctx.progress, Progress(Phase.DOWNLOAD, 0, 1, files[0].path)) as sink:
        try:
            return _Transfer(access, files, Path(partial), sink, retries).run()
        except OSError as e:  # a full disk mid-download, an unwritable cache
            where = e.filename or partial
            raise OutputError(
                f"{where}: {e.strerror or e}; the bytes received so far are kept in lwq's "
                "partial area"
            ) from None


class _Transfer:
    """One call's files, fetched one after another into the partial area, then verified and
    placed."""

    def __init__(
        self,
        access: HubAccess,
        files: list[RemoteFile],
        root: Path,
        sink: ProgressSink,
        retries: int,
    ) -> None:
        self.access, self.files, self.root, self.retries = access, files, root, retries
        self.cache = access.cache_dir
        self.sink = sink
        self.received = 0

    def run(self) -> TransferResult:
        todo: dict[str, RemoteFile] = {}  # by etag: one blob, fetched once
        for f in self.files:
            if cached_file(self.cache, f) is None and not self._blob_ready(f):
                todo.setdefault(f.etag, f)
        for f in todo.values():  # every sidecar before the first byte: Resume sees the job
            self._start(f)
        resumed = sum(min(file_size(partial_paths(self.root, f)[0]), f.size) for f in todo.values())
        phases = Phases(self.sink, [(Phase.DOWNLOAD, 9), (Phase.VERIFY, 1)])
        self.download = Throttle(phases.sink(Phase.DOWNLOAD), 0.2)
        self.verify = Throttle(phases.sink(Phase.VERIFY), 0.2)
        self.total = sum(f.size for f in todo.values())
        self.done = resumed
        self.download(Progress(Phase.DOWNLOAD, self.done, max(self.total, 1), self._first(todo)))
        for f in todo.values():
            self._fetch(f)
        self.verify_total, self.verified = max(self.total, 1), 0
        self.verify(Progress(Phase.VERIFY, 0, self.verify_total, self._first(todo)))
        refused: dict[str, str] = {}  # etag -> why
        for f in todo.values():
            if problem := self._verify(f):
                refused[f.etag] = problem
            else:
                self._place(f)
        placed = [f for f in self.files if f.etag not in refused]
        paths = tuple(self._link(f) for f in placed)  # the sound ones, even when one is not
        if refused:
            more = f" (and {len(refused) - 1} more file(s))" if len(refused) > 1 else ""
            raise DownloadError(next(iter(refused.values())) + more)
        self.verify(Progress(Phase.VERIFY, self.verify_total, self.verify_total))
        return TransferResult(paths, self.received, resumed)

    @staticmethod
    def _first(todo: dict[str, RemoteFile]) -> str:
        return next(iter(todo.values())).path if todo else ""

    def _blob_ready(self, f: RemoteFile) -> bool:
        """A blob placed (and so verified) by an earlier call or an identical file."""
        return file_size(blob_path(self.cache, f)) == f.size and blob_path(self.cache, f).is_file()

    def _start(self, f: RemoteFile) -> None:
        """Write the sidecar; drop a partial of another file under the same name."""
        part, meta = partial_paths(self.root, f)
        old, new = read_sidecar(meta), sidecar(f, self.access.endpoint)
        if old == new:
            return
        same_bytes = old is not None and all(old.get(k) == new[k] for k in ("size", "etag"))
        part.parent.mkdir(parents=True, exist_ok=True)
        if not same_bytes:  # the bytes of another file (or of no known one): start afresh
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        atomic_write_text(meta, json.dumps(new, indent=1))

    # -- DOWNLOAD --

    def _fetch(self, f: RemoteFile) -> None:
        """Append to the partial until it has ``f.size`` bytes, retrying transient failures."""
        import httpx2

        part = partial_paths(self.root, f)[0]
        if file_size(part) > f.size:
            self._count(-f.size, f.path)  # counted as resumed: it was not
            part.unlink()
        failures = 0  # in a row since the last new byte: ``retries`` of them are retried
        while (have := file_size(part)) < f.size:
            try:
                self._get(f, part, have)
            except (httpx2.TransportError, _Transient) as e:
                failures = 1 if file_size(part) > have else failures + 1
                if failures > self.retries:
                    got = file_size(part)
                    raise DownloadError(
                        f"{f.repo}: {f.path}: the download broke off at {got} of {f.size} "
                        f"bytes ({type(e).__name__}: {e}); the bytes received are kept in "
                        "lwq's partial area: run it again to resume"
                    ) from None
                time.sleep(RETRY_WAIT * max(failures, 1))

    def _get(self, f: RemoteFile, part: Path, have: int) -> None:
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        headers = build_hf_headers(token=self.access.token or False, library_name="lwq")
        headers["Accept-Encoding"] = "identity"  # the bytes as stored, so Range means bytes
        if have:
            headers["Range"] = f"bytes={have}-"
        url = f.url(self.access.endpoint)
        with get_session().stream("GET", url, headers=headers, timeout=_timeout()) as r:
            if r.status_code == 416:  # a partial longer than the file: start over
                self._count(-have, f.path)
                part.unlink()
                return
            if r.status_code in _TRANSIENT:
                raise _Transient(f"HTTP {r.status_code}")
            if r.status_code >= 400:
                r.read()
                with hub_errors(f"{f.repo}: {f.path}", self.access):
                    hf_raise_for_status(r)
            start = _range_start(r.headers.get("Content-Range")) if r.status_code == 206 else 0
            if start != have:  # the server ignored Range (a 200) or answered another one
                self._count(-have, f.path)
                have = 0
                if start:  # a 206 from elsewhere in the file: ask again from the start
                    part.unlink()
                    return
            with open(part, "r+b" if part.exists() else "wb") as out:
                _lock(out, f)
                out.seek(have)
                out.truncate()
                for chunk in r.iter_bytes():
                    if have + len(chunk) > f.size:
                        raise DownloadError(
                            f"{f.repo}: {f.path}: the Hub sends more than the {f.size} bytes "
                            "it announced"
                        )
                    out.write(chunk)
                    have += len(chunk)
                    self.received += len(chunk)
                    self._count(len(chunk), f.path)

    def _count(self, n: int, item: str) -> None:
        self.done += n
        self.download(Progress(Phase.DOWNLOAD, self.done, max(self.total, 1), item))

    # -- VERIFY and place --

    def _verify(self, f: RemoteFile) -> str:
        """'' if the partial holds what the Hub announced; else why (and it is removed)."""
        part, meta = partial_paths(self.root, f)
        if f.sha256:
            kind, expected, h = "sha256", f.sha256, hashlib.sha256()
        elif _SHA1.fullmatch(f.etag):  # a file kept in git: its etag is the blob's sha1
            kind, expected, h = "git sha1", f.etag, hashlib.sha1(b"blob %d\0" % f.size)
        else:
            kind, expected, h = "", "", None
        with open(part, "rb") as src:
            while block := src.read(HASH_CHUNK):
                if h is not None:
                    h.update(block)
                self.verified += len(block)
                self.verify(Progress(Phase.VERIFY, self.verified, self.verify_total, f.path))
        got, size = (h.hexdigest() if h is not None else ""), file_size(part)
        if size == f.size and got == expected:
            return ""
        for p in (part, meta):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        what = f"{kind} {got}, the Hub announces {expected}" if got != expected else ""
        what = what or f"{size} bytes, the Hub announces {f.size}"
        return (
            f"{f.repo}: {f.path}: the downloaded bytes have {what}: refused and removed "
            "(damaged in transit, or by a proxy); run it again to download it afresh"
        )

    def _place(self, f: RemoteFile) -> None:
        """Move the verified partial to its blob (atomically; a copy across file systems)."""
        part, meta = partial_paths(self.root, f)
        blob = blob_path(self.cache, f)
        blob.parent.mkdir(parents=True, exist_ok=True)
        _readable(part)
        try:
            os.replace(part, blob)
        except OSError:  # another file system: copy beside the blob, then rename
            tmp = blob.with_name(f".{blob.name}.lwq-copy")
            try:
                shutil.copyfile(part, tmp)
                os.replace(tmp, blob)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            part.unlink()
        with contextlib.suppress(FileNotFoundError):
            meta.unlink()
        with contextlib.suppress(OSError):
            meta.parent.rmdir()

    def _link(self, f: RemoteFile) -> Path:
        """The snapshot entry for ``f`` (a relative symlink to its blob) and ``refs/<revision>``."""
        folder = repo_folder(self.cache, f.repo, f.repo_type)
        dst = snapshot_path(self.cache, f)
        if cached_file(self.cache, f) is None:
            blob = blob_path(self.cache, f)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.lwq-link")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.symlink(os.path.relpath(blob, dst.parent), tmp)
            except OSError:  # no symlinks here (Windows without developer mode): a copy
                shutil.copyfile(blob, tmp)
            os.replace(tmp, dst)
        if f.revision != f.commit:
            ref = folder / "refs" / f.revision
            if not ref.is_file() or ref.read_text(encoding="utf-8") != f.commit:
                ref.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(ref, f.commit)
        return dst


class _Transient(Exception):
    """A 5xx or 429 answer: retried like a dropped connection."""


def _timeout() -> Any:
    import httpx2
    from huggingface_hub import constants

    return httpx2.Timeout(max(float(constants.HF_HUB_DOWNLOAD_TIMEOUT), 30.0), connect=10.0)


def _range_start(content_range: str | None) -> int:
    m = re.match(r"bytes (\d+)-", content_range or "")
    return int(m.group(1)) if m else 0


def _lock(out: Any, f: RemoteFile) -> None:
    """Refuse a partial another process is writing (POSIX; released when that one dies)."""
    try:
        import fcntl
    except ImportError:
        return
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DownloadError(
            f"{f.repo}: {f.path} is being downloaded by another lwq process; wait for it"
        ) from None


def _readable(path: Path) -> None:
    """Blobs are read-shared like huggingface_hub's: the mode of a new file under the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~mask)
