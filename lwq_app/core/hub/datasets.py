"""Evaluation and calibration datasets from the Hugging Face Hub, as llama.cpp's tools read them.

``fetch(name)`` returns a local file ready for ``lwq eval -f``, the ``lwq tasks`` options or
``lwq imatrix -f``; ``cached(name)`` says whether one is already on disk, without the network.

Where each file comes from, and why that source:

* ``wikitext``: llama.cpp's own ``wiki.test.raw``. Its ``scripts/get-wikitext-2.sh`` downloads
  ``wikitext-2-raw-v1.zip`` from the Hub dataset ``ggml-org/ci``; we extract
  ``wikitext-2-raw/wiki.test.raw`` and check its SHA-256 (1,290,590 bytes, LF line ends).
  Not ``Salesforce/wikitext``: its rows are parquet (reading that needs pyarrow, which lwq does
  not depend on), and its loader stored each whitespace-only line of the raw file (``" \\n"``)
  as an empty row, so joining the rows is not the raw file; ``"".join(r or " \\n" for r in
  rows)`` would rebuild it, but the zip holds the file itself.
* ``hellaswag``, ``arc-*``, ``mmlu*``, ``truthfulqa``: ``ikawrakow/validation-datasets-for-llama.cpp``,
  llama.cpp's binary multiple-choice files (``llama-perplexity --multiple-choice``). HellaSwag's
  6-line text file (``--hellaswag``) is not on the Hub; its binary file is scored as multiple
  choice.
* ``winogrande``: ``ikawrakow/winogrande-eval-for-llama.cpp``, the CSV ``scripts/get-winogrande.sh``
  fetches.
* ``calibration``: ``eaddario/imatrix-calibration``'s ``combined_all_medium.parquet`` (text,
  code, maths and tool calls in several languages; published imatrix quants cite it), written
  out as plain text. Parquet needs pyarrow: without it this entry says so before
  downloading anything.

Downloads go through huggingface_hub into its own cache (``HF_HOME`` / ``HF_HUB_CACHE``,
shared with other tools), one file per child process, since huggingface_hub has no cancel:
cancelling kills the child. An interrupted download is not resumed: huggingface_hub (2.4)
downloads into a file of its own (``<etag>.<random>.incomplete``) and deletes it when the
download fails, so the next fetch starts over; the partial file a killed child leaves is
removed by ``fetch`` on cancel. Files lwq converts (wikitext, calibration) are written once
into lwq's cache, ``$LWQ_CACHE_DIR/data`` (default ``~/.cache/lwq/data``). With
``HF_HUB_OFFLINE=1`` or no network the caches are used; a file in neither is a
``DownloadError`` that says how to fetch it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ..evaluate.task_files import TaskKind
from ..jobs.atomic import atomic_write_bytes
from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import Cancelled, DownloadError, InputError, JobFailed, OutputError
from ..jobs.paths import cache_dir
from ..jobs.progress import (
    CancelToken,
    Phase,
    Progress,
    ProgressSink,
    Throttle,
    check,
    no_progress,
)
from ..modelfile.hashing import sha256_text


class Form(str, Enum):
    """How the Hub file becomes the file ``fetch`` hands out."""

    AS_IS = "as-is"  # the file in the Hugging Face cache itself
    ZIP_MEMBER = "zip-member"  # one file extracted from a zip archive
    PARQUET_TEXT = "parquet-text"  # a parquet table's text column as plain text


@dataclass(frozen=True)
class HubDataset:
    """One catalog entry: where the file lives on the Hub and what it is."""

    name: str
    repo: str  # a Hub *dataset* repository
    filename: str
    revision: str  # a commit where one is known, so the bytes never change under a user
    description: str
    license: str
    size: str  # of the ready file, as the Hub lists it; "" when not known
    form: Form = Form.AS_IS
    task: TaskKind | None = None  # the ``lwq tasks`` format the file is in
    member: str = ""  # ZIP_MEMBER: the file inside the archive
    sha256: str = ""  # of the ready file, checked when lwq writes it
    output: str = ""  # converted forms: the file's name in lwq's data cache


VALIDATION = "ikawrakow/validation-datasets-for-llama.cpp"
VALIDATION_REVISION = "37884b81b4957f1950a53b6ff48d77c8dd5e430c"  # "Add Wiki2 training and test"


def _multiple_choice(name: str, filename: str, size: str, what: str) -> HubDataset:
    return HubDataset(
        name,
        VALIDATION,
        filename,
        VALIDATION_REVISION,
        f"{what}, llama.cpp binary multiple-choice file",
        "apache-2.0",
        size,
        task=TaskKind.MULTIPLE_CHOICE,
    )


CATALOG: dict[str, HubDataset] = {
    d.name: d
    for d in (
        HubDataset(
            "wikitext",
            "ggml-org/ci",
            "wikitext-2-raw-v1.zip",
            "927b3642933080f1b0e811e2f916e14c292992f9",
            "WikiText-2 raw test set: llama.cpp's wiki.test.raw (perplexity, KLD)",
            "CC BY-SA 3.0 / GFDL",
            "1.29 MB",
            form=Form.ZIP_MEMBER,
            member="wikitext-2-raw/wiki.test.raw",
            sha256="173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08",
            output="wiki.test.raw",
        ),
        _multiple_choice(
            "hellaswag", "hellaswag-validation.bin", "8.18 MB", "HellaSwag validation"
        ),
        HubDataset(
            "winogrande",
            "ikawrakow/winogrande-eval-for-llama.cpp",
            "winogrande-debiased-eval.csv",
            "93f7fb0697ca6cd2c7e5727dcba3b7200fa4014c",
            "WinoGrande debiased eval, llama.cpp CSV",
            "apache-2.0",
            "155 kB",
            task=TaskKind.WINOGRANDE,
        ),
        _multiple_choice(
            "arc-challenge", "arc-challenge-validation.bin", "95.3 kB", "ARC-Challenge validation"
        ),
        _multiple_choice("arc-easy", "arc-easy-validation.bin", "155 kB", "ARC-Easy validation"),
        _multiple_choice("mmlu", "mmlu-validation.bin", "762 kB", "MMLU validation"),
        _multiple_choice("mmlu-test", "mmlu-test.bin", "6.86 MB", "MMLU test"),
        _multiple_choice(
            "truthfulqa", "truthful-qa-validation.bin", "622 kB", "TruthfulQA validation"
        ),
        HubDataset(
            "calibration",
            "eaddario/imatrix-calibration",
            "combined_all_medium.parquet",
            "main",
            "imatrix calibration text: prose, code, maths, tool calls (needs pyarrow)",
            "see the dataset card",
            "",
            form=Form.PARQUET_TEXT,
            output="imatrix-calibration-combined_all_medium.txt",
        ),
    )
}


def dataset(name: str) -> HubDataset:
    """The catalog entry for ``name``; ``InputError`` listing the choices if there is none."""
    try:
        return CATALOG[name]
    except KeyError:
        raise InputError(f"unknown dataset {name!r}: choose from {', '.join(CATALOG)}") from None


def hub_cache_dir() -> Path:
    """huggingface_hub's cache, read from the environment now (its constants are read once)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def data_dir() -> Path:
    """Where lwq keeps the files it converts (beside its base-logits cache)."""
    return cache_dir("data")


def offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it, but read now."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached(name: str) -> Path | None:
    """The ready local file for ``name`` if it is on disk already; never touches the network."""
    ds = dataset(name)
    if ds.form is Form.AS_IS:
        return _in_hub_cache(ds)
    path = data_dir() / ds.output
    return path if path.is_file() else None


@dataclass(frozen=True)
class FetchRequest:
    """``lwq fetch NAME``: one dataset of the catalog (``CATALOG``)."""

    name: str


@dataclass(frozen=True)
class FetchResult:
    """The ready local file of a dataset; ``downloaded`` is false when it came from a cache."""

    dataset: HubDataset
    path: Path
    downloaded: bool


@public_job("fetch")
def fetch_dataset(
    request: FetchRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> FetchResult:
    """The job behind ``lwq fetch``: ``fetch`` with what it fetched (see there)."""
    check(cancel)
    ds = dataset(request.name)
    was_cached = cached(ds.name) is not None
    path = fetch(ds.name, progress=progress, cancel=cancel)
    return FetchResult(ds, path, downloaded=not was_cached)


def fetch(
    name: str, *, progress: ProgressSink = no_progress, cancel: CancelToken | None = None
) -> Path:
    """The local file for ``name`` in llama.cpp's format, downloaded and converted if need be.

    Reports ``DOWNLOAD`` progress in bytes and a ``WRITE`` step for converted files; nothing
    when the file is cached. Raises ``DownloadError`` naming the dataset and file when it
    cannot be had, ``Cancelled`` when ``cancel`` is set: nothing of the download is kept
    (the next fetch starts over).
    """
    check(cancel)
    ds = dataset(name)
    ready = cached(name)
    if ready is not None:
        return ready
    if ds.form is Form.PARQUET_TEXT:
        _pyarrow_parquet(ds)  # say so before a download that could not be read
    token = cancel or CancelToken()
    token.raise_if_cancelled()
    source = _in_hub_cache(ds) or _download(ds, progress, token)
    token.raise_if_cancelled()
    if ds.form is Form.AS_IS:
        return source
    progress(Progress(Phase.WRITE, 0, 1, ds.output))
    token.raise_if_cancelled()
    data = _zip_member(ds, source) if ds.form is Form.ZIP_MEMBER else _parquet_text(ds, source)
    token.raise_if_cancelled()
    if ds.sha256 and (digest := sha256_text(data)) != ds.sha256:
        raise DownloadError(
            f"{ds.name}: {ds.member or ds.filename} from {source} has SHA-256 {digest}, "
            f"expected {ds.sha256}: the download is damaged or the file on the Hub changed"
        )
    out = data_dir() / ds.output
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out.parent}: cannot create lwq's data cache: {e.strerror}") from None
    token.raise_if_cancelled()
    atomic_write_bytes(out, data)
    progress(Progress(Phase.WRITE, 1, 1, ds.output))
    return out


def rows_to_text(rows: list[str]) -> bytes:
    """A text column as one UTF-8 text file: the non-empty rows, one per line."""
    text = "\n".join(r.rstrip("\n") for r in rows if r.strip())
    return (text + "\n").encode("utf-8") if text else b""


# --- the Hugging Face cache and the download child --------------------------------------------


def _in_hub_cache(ds: HubDataset) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(
        ds.repo, ds.filename, cache_dir=hub_cache_dir(), revision=ds.revision, repo_type="dataset"
    )
    return Path(hit) if isinstance(hit, str) else None


def _download(ds: HubDataset, progress: ProgressSink, cancel: CancelToken) -> Path:
    cache = hub_cache_dir()
    if offline():
        raise DownloadError(
            f"{ds.name}: {ds.repo}/{ds.filename} is not in the Hugging Face cache ({cache}) "
            f"and HF_HUB_OFFLINE is set: run `lwq fetch {ds.name}` once with network and "
            "without HF_HUB_OFFLINE"
        )
    progress(Progress(Phase.DOWNLOAD, 0, 1, ds.filename))
    folders = _hub_folders(cache, ds)
    before = _files_under(folders)
    try:
        path = run_in_child(
            f"{__name__}:download_file",
            {
                "name": ds.name,
                "repo": ds.repo,
                "filename": ds.filename,
                "revision": ds.revision,
                "cache_dir": str(cache),
            },
            progress=progress,
            cancel=cancel,
        )
    except (Cancelled, JobFailed):
        _remove_orphans(folders, before)
        raise
    progress(Progress(Phase.DOWNLOAD, 1, 1, ds.filename))
    return Path(path)


def _hub_folders(cache: Path, ds: HubDataset) -> tuple[Path, ...]:
    """The dataset's folder in the Hugging Face cache, and its lock folder."""
    name = f"datasets--{ds.repo.replace('/', '--')}"
    return cache / name, cache / ".locks" / name


def _files_under(folders: tuple[Path, ...]) -> set[Path]:
    """Every file and folder under ``folders``, the folders themselves included."""
    return {p for f in folders if f.is_dir() for p in (f, *f.rglob("*"))}


#: what a killed ``hf_hub_download`` leaves: its private partial file and its lock file
ORPHANS = ("*.incomplete", "*.lock")


def _remove_orphans(folders: tuple[Path, ...], before: set[Path]) -> None:
    """Delete the partial download (``*.incomplete``) and lock a killed child left, and the
    folders it created that are empty then; nothing that was there before it started."""
    new = _files_under(folders) - before
    for p in new:
        if p.is_file() and any(p.match(pattern) for pattern in ORPHANS):
            with contextlib.suppress(OSError):
                p.unlink()
    for d in sorted((p for p in new if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()  # only succeeds when empty


#: bytes per progress report of a download (one read of the HTTP stream)
PROGRESS_CHUNK = 1 << 20


def download_file(
    ctx: ChildContext, *, name: str, repo: str, filename: str, revision: str, cache_dir: str
) -> str:
    """The child side of ``fetch``: one ``hf_hub_download``, its byte progress sent up the pipe
    (and repeated while nothing moves: importing huggingface_hub, the HEAD request, a stall)."""
    with _Heartbeat(ctx.progress, Progress(Phase.DOWNLOAD, 0, 1, filename)) as sink:
        return _download_file(sink, name, repo, filename, revision, cache_dir)


def _download_file(
    sink: ProgressSink, name: str, repo: str, filename: str, revision: str, cache_dir: str
) -> str:
    from huggingface_hub import constants, errors, hf_hub_download

    # huggingface_hub reads the response in DOWNLOAD_CHUNK_SIZE pieces (10 MB) and reports
    # progress once per piece: smaller pieces keep a slow download's progress alive
    constants.DOWNLOAD_CHUNK_SIZE = PROGRESS_CHUNK
    where = f"{repo}/{filename}"
    try:
        return str(
            hf_hub_download(
                repo,
                filename,
                repo_type="dataset",
                revision=revision,
                cache_dir=cache_dir,
                tqdm_class=_byte_progress(Throttle(sink, 0.2), filename),
            )
        )
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled):
        raise DownloadError(
            f"{name}: cannot reach the Hugging Face Hub for {where} and it is not in the cache "
            f"({cache_dir}): check the network (or HF_ENDPOINT / proxy settings) and run "
            f"`lwq fetch {name}` again"
        ) from None
    except (
        errors.RepositoryNotFoundError,
        errors.RevisionNotFoundError,
        errors.EntryNotFoundError,
    ) as e:
        raise DownloadError(
            f"{name}: {where} at revision {revision} is not on the Hub "
            f"({type(e).__name__}); lwq's catalog needs updating"
        ) from None
    except Exception as e:  # transport errors (httpx, hf_xet, disk) share no base class
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(f"{name}: downloading {where} failed: {first}") from None


class _Heartbeat:
    """A sink that passes events on (from any thread) and, after ``interval`` seconds without
    one, sends the last event again, so the parent hears from a download that waits."""

    def __init__(self, sink: ProgressSink, first: Progress, interval: float = 0.5) -> None:
        self._sink, self._last, self._interval = sink, first, interval
        self._at = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __call__(self, p: Progress) -> None:
        with self._lock:
            self._last, self._at = p, time.monotonic()
            self._sink(p)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval / 2):
            with self._lock:
                if time.monotonic() - self._at >= self._interval:
                    self._at = time.monotonic()
                    self._sink(self._last)

    def __enter__(self) -> _Heartbeat:
        self(self._last)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _byte_progress(sink: ProgressSink, label: str) -> type:
    """A ``tqdm`` class for ``hf_hub_download`` that draws nothing and reports bytes to ``sink``."""
    from tqdm.std import tqdm

    class ByteProgress(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)  # huggingface_hub's own bar class takes a name
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._bytes = int(kwargs.get("initial") or 0)
            sink(Progress(Phase.DOWNLOAD, self._bytes, int(self.total or 0), label))

        def update(self, n: float | None = 1) -> bool | None:
            self._bytes += int(n or 0)
            sink(Progress(Phase.DOWNLOAD, self._bytes, int(self.total or 0), label))
            return super().update(n)

    return ByteProgress


# --- conversions ------------------------------------------------------------------------------


def _zip_member(ds: HubDataset, source: Path) -> bytes:
    try:
        with zipfile.ZipFile(source) as z:
            return z.read(ds.member)
    except KeyError:
        raise DownloadError(f"{ds.name}: {source} holds no {ds.member}") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise DownloadError(
            f"{ds.name}: {source} is not a readable zip archive ({e}); delete it and run "
            f"`lwq fetch {ds.name}` again"
        ) from None


def _pyarrow_parquet(ds: HubDataset) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"{ds.name}: {ds.repo} ships parquet files, and reading them needs pyarrow, which "
            f"lwq does not install by default: `pip install 'lwq[hub]'` (or pyarrow), then run "
            f"`lwq fetch {ds.name}` again"
        ) from None
    return pq


def _parquet_text(ds: HubDataset, source: Path) -> bytes:
    return rows_to_text(_parquet_rows(ds, source))


def _parquet_rows(ds: HubDataset, source: Path) -> list[str]:
    """The ``text`` column (else the first string column) of a parquet file."""
    pq = _pyarrow_parquet(ds)
    try:
        table = pq.read_table(source)
    except (OSError, ValueError) as e:  # pyarrow's ArrowIOError / ArrowInvalid
        raise DownloadError(f"{ds.name}: {source} is not a readable parquet file ({e})") from None
    strings = [f.name for f in table.schema if str(f.type) in {"string", "large_string"}]
    column = "text" if "text" in strings else next(iter(strings), None)
    if column is None:
        raise DownloadError(f"{ds.name}: {source} has no text column")
    return [r for r in table.column(column).to_pylist() if isinstance(r, str)]
