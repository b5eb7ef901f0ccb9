"""The hub jobs (``fetch_dataset``, ``hub_task_file``, ``default_eval_text``) against the loopback
Hugging Face Hub (tests/hub_server.py), through lwq's one downloader: slowly enough to cancel a
download halfway, and to see the next fetch resume it. No test here touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_server import HubServer, hub_env
from lwq_app.core.evaluate.task_files import TaskKind, write_multiple_choice
from lwq_app.core.hub import (
    FetchRequest,
    default_eval_text,
    fetch_dataset,
    hub_task_file,
)
from lwq_app.core.hub import datasets as hubdata
from lwq_app.core.hub.transfer import pending_downloads
from lwq_app.core.jobs.errors import Cancelled, DownloadError, InputError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.jobs.resources import WIKITEXT_EXCERPT

WIKI = " \n = Robert Boulter = \n \n Robert Boulter is an English film actor .\n"
RATE = 1_700_000  # bytes/s the slow files are served at: a 4 MiB file takes ~2.5 s


class Hub:
    """The loopback Hub with the catalog's dataset repos (each at its pinned commit)."""

    def __init__(self, server: HubServer) -> None:
        self.server = server
        self.trees: dict[str, dict[str, bytes]] = {}

    def add(self, ds: hubdata.HubDataset, data: bytes, *, slow: bool = False) -> None:
        tree = self.trees.setdefault(ds.repo, {})
        tree[ds.filename] = data
        commit = ds.revision if len(ds.revision) == 40 else None
        self.server.add_model(ds.repo, tree, repo_type="dataset", commit=commit)
        if slow:
            self.server.slow(ds.repo, ds.filename, RATE)

    def gets(self, ds: hubdata.HubDataset) -> list[str | None]:
        """The ``Range`` of every GET of the file's bytes (None: from the start)."""
        return [q.range for q in self.server.downloads(ds.repo, ds.filename)]


@pytest.fixture
def loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A loopback Hub as HF_ENDPOINT, an empty Hugging Face cache and an empty lwq cache."""
    with hub_env(tmp_path, monkeypatch) as server:
        yield Hub(server)


def wiki_zip(text: str, padding: int = 4 << 20) -> bytes:
    """wikitext's zip: the test file and (stored, random) padding so the download takes time."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("wikitext-2-raw/wiki.test.raw", text)
        z.writestr("wikitext-2-raw/wiki.train.raw", os.urandom(padding))
    return buf.getvalue()


@pytest.fixture
def wikitext(loopback: Hub, monkeypatch: pytest.MonkeyPatch) -> hubdata.HubDataset:
    ds = dataclasses.replace(
        hubdata.CATALOG["wikitext"], sha256=hashlib.sha256(WIKI.encode()).hexdigest()
    )
    monkeypatch.setitem(hubdata.CATALOG, "wikitext", ds)
    loopback.add(ds, wiki_zip(WIKI), slow=True)
    return ds


def tree(*folders: Path) -> set[Path]:
    """The files under ``folders`` (huggingface_hub's cache marker ``CACHEDIR.TAG`` aside)."""
    return {
        p for f in folders if f.exists() for p in f.rglob("*")
        if p.is_file() and p.name != "CACHEDIR.TAG"
    }  # fmt: skip


def temp_files(*folders: Path) -> list[Path]:
    """Partial files: huggingface_hub's ``*.incomplete`` and lwq's ``*.lwq-tmp*``."""
    return [p for p in tree(*folders) if p.name.endswith(".incomplete") or ".lwq-tmp" in p.name]


def check_progress(events: list[tuple[float, Progress]]) -> None:
    """Every phase of >= 2 s has >= 3 intermediate events and no gap over 2 s."""
    runs = [list(g) for _, g in itertools.groupby(events, key=lambda e: e[1].phase)]
    for i, evs in enumerate(runs):  # each run of consecutive events of one phase, which
        phase = evs[0][1].phase  # lasts until the next phase's first event
        times = [t for t, _ in evs] + ([runs[i + 1][0][0]] if i + 1 < len(runs) else [])
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps, default=0) <= 2.0, (phase, gaps)
        if times[-1] - times[0] >= 2.0:
            inner = [p for _, p in evs if 0 < p.done < p.total]
            assert len(inner) >= 3, (phase, [p for _, p in evs])


def test_fetch_downloads_converts_and_reports_bytes(
    wikitext: hubdata.HubDataset, tmp_path: Path, loopback: Hub
) -> None:
    events: list[tuple[float, Progress]] = []
    r = fetch_dataset(
        FetchRequest("wikitext"), progress=lambda p: events.append((time.monotonic(), p))
    )
    assert r.downloaded and r.dataset == wikitext
    assert r.path == tmp_path / "lwq" / "data" / "wiki.test.raw"
    assert r.path.read_bytes() == WIKI.encode()
    phases = [p.phase for _, p in events]
    assert phases[0] is Phase.DOWNLOAD and phases[-1] is Phase.WRITE
    assert Phase.VERIFY in phases  # the zip is an LFS file: its sha256 is checked
    sizes = {p.total for _, p in events if p.phase is Phase.DOWNLOAD and p.total > 1}
    assert sizes == {len(wiki_zip(WIKI))}  # bytes, from the child
    check_progress(events)
    assert not temp_files(tmp_path) and pending_downloads() == []
    again = fetch_dataset(FetchRequest("wikitext"))
    assert again.path == r.path and not again.downloaded and loopback.gets(wikitext) == [None]


@pytest.mark.parametrize(
    "where",
    ["download-start", "download-bytes", "write"],
)
def test_cancel_in_each_phase_leaves_no_file(
    where: str, wikitext: hubdata.HubDataset, tmp_path: Path, loopback: Hub
) -> None:
    """Cancelled within 1 s; a killed download leaves nothing in the Hugging Face cache (no
    ``*.incomplete``, nothing under a final name) and nothing new in lwq's data cache; the bytes
    received wait in lwq's partial area, and the next fetch resumes from them."""
    hit = {
        "download-start": lambda p: p.phase is Phase.DOWNLOAD,
        "download-bytes": lambda p: p.phase is Phase.DOWNLOAD and 0 < p.done < p.total,
        "write": lambda p: p.phase is Phase.WRITE,
    }[where]
    hf, lwq = tmp_path / "hf", tmp_path / "lwq"
    if where == "write":  # the download is not what is cancelled: no need to wait for it
        loopback.server.slow(wikitext.repo, wikitext.filename, 1 << 30)
    before = tree(hf, lwq / "data")
    token = CancelToken()
    when: list[float] = []

    def on_progress(p: Progress) -> None:
        if hit(p) and not token.cancelled:
            when.append(time.monotonic())
            token.cancel()

    with pytest.raises(Cancelled):
        fetch_dataset(FetchRequest("wikitext"), progress=on_progress, cancel=token)
    assert when and time.monotonic() - when[0] < 1.0
    assert temp_files(hf, lwq) == []
    assert not (lwq / "data" / "wiki.test.raw").exists()
    if where == "write":  # the finished download stays in the Hugging Face cache
        assert hubdata._in_hub_cache(wikitext) is not None and pending_downloads() == []
        return
    assert tree(hf, lwq / "data") == before  # the download never finished
    if where == "download-bytes":
        [pending] = pending_downloads()
        assert pending.repo == wikitext.repo and pending.repo_type == "dataset"
        assert 0 < pending.have_bytes < pending.total_bytes
        loopback.server.slow(wikitext.repo, wikitext.filename, 1 << 30)
        assert fetch_dataset(FetchRequest("wikitext")).path.read_bytes() == WIKI.encode()
        first, resumed = loopback.gets(wikitext)
        assert first is None and resumed is not None and resumed != "bytes=0-"
        assert pending_downloads() == []


def test_a_killed_fetch_leaves_the_hf_cache_as_it_was(
    wikitext: hubdata.HubDataset, tmp_path: Path
) -> None:
    """An ``*.incomplete`` that was there before (another process's download) is kept, and
    nothing is added beside it: the partial file is lwq's, in its own area."""
    blobs = tmp_path / "hf" / "hub" / "datasets--ggml-org--ci" / "blobs"
    blobs.mkdir(parents=True)
    other = blobs / "feedbeef.0123abcd.incomplete"
    other.write_bytes(b"someone else's")
    token = CancelToken()

    def on_progress(p: Progress) -> None:
        if p.phase is Phase.DOWNLOAD and 0 < p.done < p.total:
            token.cancel()

    with pytest.raises(Cancelled):
        fetch_dataset(FetchRequest("wikitext"), progress=on_progress, cancel=token)
    assert list(blobs.iterdir()) == [other]
    assert not list((tmp_path / "hf" / "hub").rglob("*.lock"))
    assert list((tmp_path / "lwq" / "partial").rglob("*.part"))


def test_a_cancelled_token_is_refused_on_entry() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        fetch_dataset(FetchRequest("wikitext"), cancel=token)
    with pytest.raises(Cancelled):
        hub_task_file("arc", cancel=token)


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("wiki", InputError, r"unknown dataset 'wiki': choose from wikitext"),
        (
            "mmlu",
            DownloadError,
            r"^mmlu: ikawrakow/validation-datasets-for-llama.cpp: mmlu-validation.bin on .*no such",
        ),
        ("wikitext-damaged", DownloadError, r"wikitext: .*wikitext-2-raw-v1.zip is not a readable"),
        ("winogrande-damaged", DownloadError, r"^winogrande: .*winogrande-debiased-eval.csv: the "),
    ],
)
def test_bad_fetches_name_the_dataset(
    name: str, error: type[Exception], match: str, loopback: Hub
) -> None:
    if name == "wikitext-damaged":
        name = "wikitext"
        loopback.add(hubdata.CATALOG["wikitext"], b"PK not a zip")
    if name == "winogrande-damaged":  # bytes damaged on the way: the git blob sha1 differs
        name = "winogrande"
        ds = hubdata.CATALOG[name]
        loopback.add(ds, b"index,sentence,option1,option2,answer\n")
        loopback.server.damage(ds.repo, ds.filename)
    # mmlu is not on the loopback Hub: its repo is missing
    with pytest.raises(error, match=match):
        fetch_dataset(FetchRequest(name))


def test_hub_task_file_gives_the_fetched_file_and_its_format(loopback: Hub, tmp_path: Path) -> None:
    mc = tmp_path / "arc.bin"
    write_multiple_choice(mc, [("Which is a colour?", ["red", "seven"], [1, 0])])
    loopback.add(hubdata.CATALOG["arc-challenge"], mc.read_bytes())
    f = hub_task_file("arc")
    assert f.benchmark == "arc" and f.kind is TaskKind.MULTIPLE_CHOICE
    assert f.path.read_bytes() == mc.read_bytes()
    loopback.add(hubdata.CATALOG["hellaswag"], mc.read_bytes())
    assert hub_task_file("hellaswag").kind is TaskKind.MULTIPLE_CHOICE  # the Hub's is binary
    with pytest.raises(InputError, match="no Hub dataset for benchmark 'piqa'"):
        hub_task_file("piqa")


def test_default_eval_text_prefers_the_fetched_wikitext(
    wikitext: hubdata.HubDataset, loopback: Hub
) -> None:
    t = default_eval_text()
    assert t.path == WIKITEXT_EXCERPT and not t.full
    assert "bundled wikitext-2 test excerpt" in t.source and "lwq fetch wikitext" in t.source
    loopback.server.slow(wikitext.repo, wikitext.filename, 1 << 30)
    got = fetch_dataset(FetchRequest("wikitext")).path
    t = default_eval_text()
    assert t.path == got and t.full and str(got) in t.source
