"""The Model step's Hub flow: search, details, download, convert, then open — as core jobs.

``HubController`` holds no figures of its own: every call is a core function run through the
window's one worker bridge (``ctx.runner``), so each shows in the job panel with its progress
and Cancel, and each error takes the notifier's road. The flow after a download is the
core's ``DownloadResult.kind``: a GGUF opens as it is (a quantized one is upcast by the open
job, as for a local file); a safetensors folder is converted with llama.cpp's converter
(``convert_model``) into lwq's data folder, and the GGUF it makes opens in its project.

A cancelled or failed download leaves its partial files in lwq's partial area; the pending
list (``pending_downloads``) is refreshed after every download, so the pane can offer Resume
(the same download again: the core continues from the bytes it has) or Discard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from lwq_app.core.hub.access import hub_access
from lwq_app.core.hub.byte_progress import TransferRate
from lwq_app.core.hub.convert import ConvertRequest, ConvertResult, convert_model
from lwq_app.core.hub.download import DownloadRequest, DownloadResult, download_model
from lwq_app.core.hub.publish import save_token
from lwq_app.core.hub.search import (
    RepoDetails,
    SearchRequest,
    SearchResult,
    repo_details,
    search_models,
)
from lwq_app.core.hub.transfer import PendingDownload, discard_pending, pending_downloads
from lwq_app.core.jobs import CancelToken, Phase, ProgressSink, data_dir, format_size

from .context import AppContext
from .job_panel import describe_progress, format_eta
from .worker import Job

#: the GGUF types a safetensors download can be converted to
OUT_TYPES = ("F16", "BF16", "F32")


def converted_path(result: DownloadResult, out_type: str) -> Path:
    """Where the GGUF converted from a download goes: lwq's data folder (a project refers to
    its float base in place, so it must outlive any cache clean-up), one name per repo,
    commit and type."""
    org_name = result.repo.replace("/", "--")
    name = result.repo.rsplit("/", 1)[-1]
    return data_dir() / "hub" / org_name / f"{name}-{result.commit[:12]}-{out_type}.gguf"


def folder_output(folder: Path, out_type: str) -> Path:
    """Where the GGUF converted from a local folder goes: lwq's data folder, one name per
    folder (its name and a digest of its path) and type."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return data_dir() / "converted" / f"{folder.name}-{digest}-{out_type}.gguf"


#: the phases whose progress counts bytes
BYTE_PHASES = (Phase.DOWNLOAD, Phase.VERIFY, Phase.HASH, Phase.UPLOAD)


class TransferReadout:
    """The line a Hub job's progress is shown as: for a byte phase "12.0 MiB of 256 MiB ·
    8.1 MiB/s · about 30 s left" (the core's ``TransferRate``), else the job panel's text."""

    def __init__(self) -> None:
        self._rates: dict[int, TransferRate] = {}

    def text(self, job: Job) -> str:
        p = job.progress
        if p is None or p.phase not in BYTE_PHASES:
            eta = format_eta(job.seconds_left)
            return describe_progress(job) + (f" — {eta}" if eta else "")
        rate, left = self._rates.setdefault(job.id, TransferRate()).update(p)
        parts = [f"{p.phase.value} {format_size(p.done, binary=True)} of "
                 f"{format_size(p.total, binary=True)}"]  # fmt: skip
        if rate is not None:
            parts.append(f"{format_size(rate, binary=True)}/s")
        if left is not None:
            parts.append(format_eta(left))
        if p.item:
            parts.append(p.item)
        return " · ".join(parts)


def convert_into(
    request: ConvertRequest, *, progress: ProgressSink, cancel: CancelToken
) -> ConvertResult:
    """``convert_model`` into ``converted_path``'s folder, made first (on the worker thread)."""
    request.output.parent.mkdir(parents=True, exist_ok=True)
    return convert_model(request, progress=progress, cancel=cancel)


class HubController(QObject):
    """Runs the Hub jobs of one window and says what they gave."""

    searched = Signal(object)  # SearchResult
    details_fetched = Signal(object)  # RepoDetails
    #: a search or a details fetch failed (the notifier has said why): what, and the error
    lookup_failed = Signal(str, object)
    downloaded = Signal(object)  # DownloadResult
    converted = Signal(object)  # ConvertResult
    pending_changed = Signal(object)  # tuple[PendingDownload, ...]
    job_changed = Signal(object)  # the flow's running download/convert Job, or None
    logged_in = Signal(object)  # TokenInfo of the token just saved

    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.out_type = OUT_TYPES[0]
        #: delete a downloaded safetensors snapshot once it is converted (frees its disk)
        self.delete_source = False
        self.result: SearchResult | None = None
        self.details: RepoDetails | None = None
        self.pending: tuple[PendingDownload, ...] = ()
        #: the download or convert now running (one at a time), or None
        self.job: Job | None = None
        self.last_download: DownloadResult | None = None
        self.last_convert: ConvertResult | None = None
        self._search_ticket = 0
        self._details_ticket = 0

    # -- search and details ---------------------------------------------------------------
    def search(self, request: SearchRequest) -> Job:
        """Search as a job; the newest search's result wins."""
        self._search_ticket += 1
        ticket = self._search_ticket

        def done(result: SearchResult) -> None:
            if ticket == self._search_ticket:
                self.result = result
                self.searched.emit(result)

        what = request.query or request.author or "models"

        def failed(exc: BaseException) -> None:
            if ticket == self._search_ticket:
                self.lookup_failed.emit("search", exc)

        return self._ctx.runner.submit(f"Search the Hub: {what}", search_models, request,
                                       on_result=done, on_error=failed)  # fmt: skip

    def fetch_details(self, repo: str, revision: str = "main") -> Job:
        """The selected repo's files, download selection, config and card, as a job."""
        self._details_ticket += 1
        ticket = self._details_ticket
        context = self.result.context if self.result is not None else 4096

        def done(details: RepoDetails) -> None:
            if ticket == self._details_ticket:
                self.details = details
                self.details_fetched.emit(details)

        def failed(exc: BaseException) -> None:
            if ticket == self._details_ticket:
                self.lookup_failed.emit("details", exc)

        return self._ctx.runner.submit_call(
            f"Details of {repo}",
            lambda: repo_details(repo, revision, hub_access(), context=context),
            on_result=done,
            on_error=failed,
        )

    # -- download, convert, open ------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.done

    def download(
        self,
        repo: str,
        patterns: Sequence[str] = (),
        revision: str = "main",
        *,
        then_open: bool = True,
    ) -> Job | None:
        """Download ``repo`` (what ``select_files`` picks, or ``patterns``) as a job, then
        convert it if it is safetensors, then open it (``then_open``). None while another
        download or conversion runs (one at a time: they compete for the same disk)."""
        if self.busy:
            self._ctx.notifier.warn(f"Download {repo}", "another download or conversion is running")
            return None
        request = DownloadRequest(repo, tuple(patterns), revision)

        def done(result: DownloadResult) -> None:
            self.last_download = result
            self._end_job()
            self.downloaded.emit(result)
            if not then_open:
                return
            if result.kind == "gguf":
                self.open(result.path)
            else:
                self.convert(result)

        job = self._ctx.runner.submit(
            f"Download {repo}", download_model, request,
            on_result=done, on_error=self._failed, on_cancel=self._end_job,
        )  # fmt: skip
        return self._start(job)

    def convert(self, download: DownloadResult, *, then_open: bool = True) -> Job | None:
        """Convert a downloaded safetensors folder to a GGUF of ``out_type``, then open it."""
        output = converted_path(download, self.out_type)
        return self._convert(download.path, output, download.repo, then_open, self.delete_source)

    def convert_folder(self, folder: Path, *, then_open: bool = True) -> Job | None:
        """Convert a local safetensors folder (config, weights, tokenizer) and open it."""
        return self._convert(Path(folder), folder_output(Path(folder), self.out_type),
                             Path(folder).name, then_open)  # fmt: skip

    def _convert(
        self, source: Path, output: Path, what: str, then_open: bool, delete_source: bool = False
    ) -> Job | None:
        if self.busy:
            self._ctx.notifier.warn(f"Convert {what}", "another download or conversion is running")
            return None
        request = ConvertRequest(source, self.out_type, output, delete_source=delete_source)

        def done(result: ConvertResult) -> None:
            self.last_convert = result
            self._end_job()
            self.converted.emit(result)
            if then_open:
                self.open(result.output)

        job = self._ctx.runner.submit(
            f"Convert {what} to {self.out_type}", convert_into, request,
            on_result=done, on_error=self._failed, on_cancel=self._end_job,
        )  # fmt: skip
        return self._start(job)

    def open(self, path: Path) -> Job:
        """Open the model in its project (the session's open job: hash, upcast if quantized)."""
        return self._ctx.session.open(Path(path))

    def cancel(self) -> None:
        if self.job is not None:
            self._ctx.runner.cancel(self.job)

    def _start(self, job: Job) -> Job:
        self.job = job
        self.job_changed.emit(job)
        return job

    def _failed(self, _exc: BaseException) -> None:  # the notifier has told the user
        self._end_job()

    def _end_job(self) -> None:
        self.job = None
        self.job_changed.emit(None)
        self.refresh_pending()

    # -- the token ----------------------------------------------------------------------------
    def log_in(self, token: str) -> Job:
        """Check ``token`` (whoami) and save it where ``hf auth login`` does: gated repos
        and the later downloads, searches and uploads use it."""
        return self._ctx.runner.submit_call(
            "Log in to the Hub",
            lambda: save_token(token, hub_access(token)),
            on_result=self.logged_in.emit,
        )

    # -- partial downloads --------------------------------------------------------------------
    def refresh_pending(self) -> Job:
        """Read the partial downloads lwq keeps (for Resume / Discard)."""

        def done(pending: Sequence[PendingDownload]) -> None:
            self.pending = tuple(pending)
            self.pending_changed.emit(self.pending)

        return self._ctx.runner.submit_call("List partial downloads", pending_downloads,
                                            on_result=done)  # fmt: skip

    def resume(self, pending: PendingDownload) -> Job | None:
        """Continue a partial download: the same download again (the core skips the files
        it has and starts each partial one from the bytes it has)."""
        return self.download(pending.repo, (), pending.revision)

    def discard(self, pending: PendingDownload, then: Callable[[], Any] | None = None) -> Job:
        """Delete a partial download's bytes."""

        def done(_: object) -> None:
            self.refresh_pending()
            if then is not None:
                then()

        return self._ctx.runner.submit_call(
            f"Discard the partial download of {pending.repo}",
            lambda: discard_pending(pending.repo, pending.revision, pending.repo_type),
            on_result=done,
        )
