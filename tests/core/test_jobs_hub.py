"""The hub jobs (``fetch_dataset``, ``hub_task_file``, ``default_eval_text``) against a loopback
Hugging Face Hub: a local HTTP server that answers ``hf_hub_download``'s HEAD and GET as the
Hub does, slowly enough to cancel a download halfway. No test here touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lwq_app.core.evaluate.task_files import TaskKind, write_multiple_choice
from lwq_app.core.hub import (
    FetchRequest,
    default_eval_text,
    fetch_dataset,
    hub_task_file,
)
from lwq_app.core.hub import datasets as hubdata
from lwq_app.core.jobs.errors import Cancelled, DownloadError, InputError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.jobs.resources import WIKITEXT_EXCERPT

WIKI = " \n = Robert Boulter = \n \n Robert Boulter is an English film actor .\n"
PIECE = 256 << 10  # bytes the server sends at a time
DELAY = 0.15  # seconds between pieces: a 4 MiB file takes ~2.4 s


class Hub:
    """Files the loopback Hub serves, by URL path, and the requests it saw."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.delay = DELAY
        self.gets = 0

    def add(self, ds: hubdata.HubDataset, data: bytes) -> None:
        self.files[f"/datasets/{ds.repo}/resolve/{ds.revision}/{ds.filename}"] = data


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _head(self) -> bytes | None:
            data = hub.files.get(self.path.split("?")[0])
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            commit = self.path.split("/resolve/")[1].split("/")[0]
            self.send_response(200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return data

        def do_HEAD(self) -> None:
            self._head()

        def do_GET(self) -> None:
            data = self._head()
            if data is None:
                return
            hub.gets += 1
            try:
                for i in range(0, len(data), PIECE):
                    self.wfile.write(data[i : i + PIECE])
                    self.wfile.flush()
                    time.sleep(hub.delay)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the downloading child was killed

    return Handler


@pytest.fixture
def loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A loopback Hub as HF_ENDPOINT, an empty Hugging Face cache and an empty lwq cache."""
    hub = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("LWQ_CACHE_DIR", str(tmp_path / "lwq"))
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()


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
    loopback.add(ds, wiki_zip(WIKI))
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
    sizes = {p.total for _, p in events if p.phase is Phase.DOWNLOAD and p.total > 1}
    assert sizes == {len(wiki_zip(WIKI))}  # bytes, from the child
    check_progress(events)
    assert not temp_files(tmp_path)
    again = fetch_dataset(FetchRequest("wikitext"))
    assert again.path == r.path and not again.downloaded and loopback.gets == 1


@pytest.mark.parametrize(
    "where",
    ["download-start", "download-bytes", "write"],
)
def test_cancel_in_each_phase_leaves_no_file(
    where: str, wikitext: hubdata.HubDataset, tmp_path: Path
) -> None:
    """Cancelled within 1 s; a killed download leaves no ``*.incomplete`` or lock behind
    (huggingface_hub would not resume it anyway) and nothing new in lwq's cache."""
    hit = {
        "download-start": lambda p: p.phase is Phase.DOWNLOAD,
        "download-bytes": lambda p: p.phase is Phase.DOWNLOAD and 0 < p.done < p.total,
        "write": lambda p: p.phase is Phase.WRITE,
    }[where]
    hf, lwq = tmp_path / "hf", tmp_path / "lwq"
    before = tree(hf, lwq)
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
    if where != "write":  # the download never finished: the caches are as they were
        assert tree(hf, lwq) == before
    else:  # the finished download stays in the Hugging Face cache, for the next fetch
        assert hubdata._in_hub_cache(wikitext) is not None


def test_orphans_of_a_killed_download_are_removed_but_not_others(
    wikitext: hubdata.HubDataset, tmp_path: Path
) -> None:
    """An ``*.incomplete`` that was there before (another process's download) is kept."""
    blobs = tmp_path / "hf" / "hub" / "datasets--ggml-org--ci" / "blobs"
    blobs.mkdir(parents=True)
    other = blobs / "feedbeef.0123abcd.incomplete"
    other.write_bytes(b"someone else's")
    token = CancelToken()

    def on_progress(p: Progress) -> None:
        if p.phase is Phase.DOWNLOAD and 0 < p.done < p.total:
            assert [q for q in blobs.iterdir() if q != other]  # the child's partial file
            token.cancel()

    with pytest.raises(Cancelled):
        fetch_dataset(FetchRequest("wikitext"), progress=on_progress, cancel=token)
    assert list(blobs.iterdir()) == [other]
    assert not list((tmp_path / "hf" / "hub" / ".locks").rglob("*.lock"))


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
        ("mmlu", DownloadError, r"mmlu: ikawrakow/validation-datasets-for-llama.cpp/mmlu-val"),
        ("wikitext-damaged", DownloadError, r"wikitext: .*wikitext-2-raw-v1.zip is not a readable"),
    ],
)
def test_bad_fetches_name_the_dataset(
    name: str, error: type[Exception], match: str, loopback: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name == "wikitext-damaged":
        name = "wikitext"
        loopback.add(hubdata.CATALOG["wikitext"], b"PK not a zip")
    # mmlu is not on the loopback Hub: a 404
    loopback.delay = 0
    with pytest.raises(error, match=match):
        fetch_dataset(FetchRequest(name))


def test_hub_task_file_gives_the_fetched_file_and_its_format(loopback: Hub, tmp_path: Path) -> None:
    mc = tmp_path / "arc.bin"
    write_multiple_choice(mc, [("Which is a colour?", ["red", "seven"], [1, 0])])
    loopback.add(hubdata.CATALOG["arc-challenge"], mc.read_bytes())
    loopback.delay = 0
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
    loopback.delay = 0
    got = fetch_dataset(FetchRequest("wikitext")).path
    t = default_eval_text()
    assert t.path == got and t.full and str(got) in t.source
