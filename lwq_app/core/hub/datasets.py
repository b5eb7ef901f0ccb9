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

Downloads go through lwq's one downloader (``transfer.download_files``, the same as a model's)
into huggingface_hub's cache (``HF_HOME`` / ``HF_HUB_CACHE``, shared with other tools): a
child process that cancel kills, the bytes received kept in lwq's partial area so that the
next fetch resumes with ``Range``, the sha256 of an LFS file checked against the Hub's before
the file takes its place in the cache. Files lwq converts (wikitext, calibration) are written once
into lwq's cache, ``$LWQ_CACHE_DIR/data`` (default ``~/.cache/lwq/data``). With
``HF_HUB_OFFLINE=1`` or no network the caches are used; a file in neither is a
``DownloadError`` that says how to fetch it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ..evaluate.task_files import TaskKind
from ..jobs.atomic import atomic_write_bytes
from ..jobs.boundary import public_job
from ..jobs.errors import DownloadError, InputError, OutputError
from ..jobs.paths import cache_dir
from ..jobs.progress import (
    CancelToken,
    Phase,
    Progress,
    ProgressSink,
    check,
    no_progress,
)
from ..modelfile.hashing import sha256_text
from .access import hub_access
from .access import hub_cache_dir as hub_cache_dir  # re-exported: where `cached` looks
from .access import offline as offline  # re-exported: the GUI asks whether it may fetch
from .transfer import download_files, resolve_file


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


def data_dir() -> Path:
    """Where lwq keeps the files it converts (beside its base-logits cache)."""
    return cache_dir("data")


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
    cannot be had, ``Cancelled`` when ``cancel`` is set: nothing is left under a final name,
    and the bytes received wait in lwq's partial area for the next fetch to resume.
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


# --- the Hugging Face cache and the download ----------------------------------------------


def _in_hub_cache(ds: HubDataset) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(
        ds.repo, ds.filename, cache_dir=hub_cache_dir(), revision=ds.revision, repo_type="dataset"
    )
    return Path(hit) if isinstance(hit, str) else None


def _download(ds: HubDataset, progress: ProgressSink, cancel: CancelToken) -> Path:
    """The file through lwq's one downloader (``transfer``): resumable, verified, in a child."""
    access = hub_access()
    if access.offline:
        raise DownloadError(
            f"{ds.name}: {ds.repo}/{ds.filename} is not in the Hugging Face cache "
            f"({access.cache_dir}) and HF_HUB_OFFLINE is set: run `lwq fetch {ds.name}` once "
            "with network and without HF_HUB_OFFLINE"
        )
    progress(Progress(Phase.DOWNLOAD, 0, 1, ds.filename))  # before the HEAD request
    try:
        remote = resolve_file(
            access, ds.repo, ds.filename, repo_type="dataset", revision=ds.revision
        )
        cancel.raise_if_cancelled()
        [path] = download_files(access, [remote], progress=progress, cancel=cancel).paths
    except DownloadError as e:
        raise DownloadError(f"{ds.name}: {e}") from None
    return path


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
