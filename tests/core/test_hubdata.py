"""Hub datasets from a fake, populated huggingface_hub cache: no test here touches the network
(downloads are tested against the loopback Hub in test_jobs_hub.py and test_hub_download.py).

The cache is laid out as huggingface_hub lays it out (``datasets--OWNER--NAME/snapshots/<commit>/
<file>``, ``refs/main`` holding the commit), with small files in each real format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lwq_app.cli import main
from lwq_app.core.evaluate.task_files import (
    TaskKind,
    load_multiple_choice,
    load_winogrande,
    write_multiple_choice,
)
from lwq_app.core.hub import datasets as hubdata
from lwq_app.core.jobs.errors import Cancelled, DownloadError, InputError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress

#: a wiki.test.raw in miniature: LF line ends, whitespace-only lines are " \n"
WIKI = " \n = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor .\n"  # fmt: skip
#: llama-perplexity never scores a WinoGrande file's last row, hence two
WINOGRANDE = (
    "index,sentence,option1,option2,answer\n"
    "0,Sarah was a much better surgeon than Maria so _ always got the easier cases.,Sarah,Maria,2\n"
    "1,Sarah was a much better surgeon than Maria so _ always got the harder cases.,Sarah,Maria,1\n"
)


def put(hub: Path, ds: hubdata.HubDataset, data: bytes, commit: str = "") -> Path:
    """Place ``data`` in the fake cache as ``ds``'s file at its revision (or ``commit``)."""
    commit = commit or ds.revision
    if len(commit) != 40:  # a branch: refs/<branch> names the snapshot
        commit = hashlib.sha1(ds.repo.encode()).hexdigest()
    repo = hub / f"datasets--{ds.repo.replace('/', '--')}"
    path = repo / "snapshots" / commit / ds.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return path


def wiki_zip(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("wikitext-2-raw/wiki.train.raw", "not this one\n")
        z.writestr("wikitext-2-raw/wiki.test.raw", text)
    return buf.getvalue()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache under HF_HOME, offline, and an empty lwq cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LWQ_CACHE_DIR", str(tmp_path / "lwq"))
    return tmp_path / "hf" / "hub"


@pytest.fixture
def small_wikitext(monkeypatch: pytest.MonkeyPatch) -> hubdata.HubDataset:
    """The wikitext entry with the SHA-256 of ``WIKI`` instead of the real file's."""
    ds = dataclasses.replace(
        hubdata.CATALOG["wikitext"], sha256=hashlib.sha256(WIKI.encode()).hexdigest()
    )
    monkeypatch.setitem(hubdata.CATALOG, "wikitext", ds)
    return ds


def test_task_files_come_back_as_they_are_in_the_cache(hub: Path, tmp_path: Path) -> None:
    mc = tmp_path / "mc.bin"
    write_multiple_choice(mc, [("Which is a colour?", ["red", "seven"], [1, 0])] * 2)
    names = ["hellaswag", "arc-challenge", "arc-easy", "mmlu", "mmlu-test", "truthfulqa"]
    for name in names:
        put(hub, hubdata.CATALOG[name], mc.read_bytes())
    put(hub, hubdata.CATALOG["winogrande"], WINOGRANDE.encode())

    for name in names:
        assert hubdata.CATALOG[name].task is TaskKind.MULTIPLE_CHOICE
        got = hubdata.fetch(name)
        assert got == hubdata.cached(name) and got.read_bytes() == mc.read_bytes()
        assert str(got).startswith(
            str(hub / "datasets--ikawrakow--validation-datasets-for-llama.cpp")
        )
        assert len(load_multiple_choice(got)) == 2
    wino = hubdata.fetch("winogrande")
    assert (
        load_winogrande(wino)[0].texts[1].startswith("Sarah was a much better surgeon than Maria")
    )


def test_hf_hub_cache_wins_over_hf_home(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere"
    monkeypatch.setenv("HF_HUB_CACHE", str(other))
    put(hub, hubdata.CATALOG["winogrande"], WINOGRANDE.encode())
    assert hubdata.cached("winogrande") is None
    put(other, hubdata.CATALOG["winogrande"], WINOGRANDE.encode())
    assert hubdata.cached("winogrande") == other.joinpath(
        "datasets--ikawrakow--winogrande-eval-for-llama.cpp",
        "snapshots",
        hubdata.CATALOG["winogrande"].revision,
        "winogrande-debiased-eval.csv",
    )


def test_wikitext_is_extracted_byte_exact_once(
    hub: Path, tmp_path: Path, small_wikitext: hubdata.HubDataset
) -> None:
    put(hub, small_wikitext, wiki_zip(WIKI))
    assert hubdata.cached("wikitext") is None  # the zip is cached, the text not yet
    events: list[Progress] = []
    out = hubdata.fetch("wikitext", progress=events.append)
    assert out == tmp_path / "lwq" / "data" / "wiki.test.raw"
    assert out.read_bytes() == WIKI.encode()  # LF and the " \n" blank lines kept
    assert [(e.phase, e.done) for e in events] == [(Phase.WRITE, 0), (Phase.WRITE, 1)]
    assert hubdata.cached("wikitext") == out
    events.clear()
    assert hubdata.fetch("wikitext", progress=events.append) == out and events == []
    assert not [p for p in out.parent.iterdir() if p.name != "wiki.test.raw"]  # no temp files


def test_wikitext_with_the_wrong_bytes_is_refused(
    hub: Path, small_wikitext: hubdata.HubDataset
) -> None:
    put(hub, small_wikitext, wiki_zip(WIKI.replace("\n", "\r\n")))
    with pytest.raises(DownloadError, match=r"wikitext: wikitext-2-raw/wiki.test.raw from .* SHA"):
        hubdata.fetch("wikitext")
    assert hubdata.cached("wikitext") is None


def test_a_damaged_zip_names_the_dataset_and_file(
    hub: Path, small_wikitext: hubdata.HubDataset
) -> None:
    put(hub, small_wikitext, b"PK not really a zip")
    with pytest.raises(
        DownloadError, match=r"wikitext: .*wikitext-2-raw-v1.zip is not a readable zip"
    ):
        hubdata.fetch("wikitext")


def test_offline_and_not_cached_says_how_to_fetch(hub: Path) -> None:
    with pytest.raises(DownloadError) as e:
        hubdata.fetch("hellaswag")
    msg = str(e.value)
    assert "ikawrakow/validation-datasets-for-llama.cpp/hellaswag-validation.bin" in msg
    assert "HF_HUB_OFFLINE" in msg and "lwq fetch hellaswag" in msg and str(hub) in msg


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(
        InputError, match=r"unknown dataset 'wiki': choose from wikitext, hellaswag"
    ):
        hubdata.fetch("wiki")


def test_cancel_before_the_download_starts(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        hubdata.fetch("truthfulqa", cancel=token)


def test_calibration_without_pyarrow_says_so_before_downloading(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"calibration: .*needs pyarrow.*lwq\[hub\]"):
        hubdata.fetch("calibration")


def test_calibration_text_is_the_rows_one_per_line(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = hubdata.CATALOG["calibration"]
    assert ds.revision == "main"  # no pinned commit known: refs/main names the snapshot
    put(hub, ds, b"PAR1 stand-in")
    rows = ["first sample\nsecond sample\n", "", "   ", "third sample"]
    monkeypatch.setattr(hubdata, "_pyarrow_parquet", lambda ds: None)
    monkeypatch.setattr(hubdata, "_parquet_rows", lambda ds, source: rows)
    out = hubdata.fetch("calibration")
    assert out.read_text(encoding="utf-8") == "first sample\nsecond sample\nthird sample\n"
    assert hubdata.cached("calibration") == out


def test_fetch_cli_prints_paths_lists_and_fails_in_one_line(
    hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put(hub, hubdata.CATALOG["winogrande"], WINOGRANDE.encode())
    assert main(["fetch", "winogrande"]) == 0
    out = capsys.readouterr().out
    assert out == f"{hubdata.cached('winogrande')}\n"

    assert main(["fetch", "winogrande", "--json"]) == 0
    [d] = json.loads(capsys.readouterr().out)
    assert d["name"] == "winogrande" and d["task"] == "winogrande" and d["license"] == "apache-2.0"
    assert Path(d["path"]).read_text() == WINOGRANDE

    assert main(["fetch", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["NAME", "SIZE", "LICENSE", "CACHED", "SOURCE"]
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert set(rows) == set(hubdata.CATALOG)
    assert "  yes  " in rows["winogrande"] and "  no  " in rows["hellaswag"]
    assert "8.18 MB" in rows["hellaswag"]

    assert main(["fetch", "winogrande", "mmlu"]) == 1  # mmlu is not cached, and we are offline
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [str(hubdata.cached("winogrande"))]
    assert captured.err.count("\n") == 1 and "lwq: error: mmlu: " in captured.err


def test_fetch_cli_as_a_user_runs_it(hub: Path, tmp_path: Path) -> None:
    put(hub, hubdata.CATALOG["truthfulqa"], b"\0\0\0\0")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_CACHE"}  # HF_HOME, set by `hub`

    def lwq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lwq_app.cli", *args], capture_output=True, text=True, env=env
        )

    r = lwq("fetch", "truthfulqa")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(
        "snapshots/" + hubdata.VALIDATION_REVISION + "/truthful-qa-validation.bin"
    )
    r = lwq("fetch", "--help")
    assert r.returncode == 0 and "usage: lwq fetch" in r.stdout
    r = lwq("fetch", "nope")
    assert r.returncode == 1 and r.stderr.startswith("lwq: error: unknown dataset 'nope'")
