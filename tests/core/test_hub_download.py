"""``lwq hub download`` against the loopback Hub (tests/hub_server.py), with the real
huggingface_hub client: plan from the model info, resume across calls with ``Range``, sha256
verification, cancel, gated repos, the standard Hugging Face cache, the CLI. No network.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_server import HubServer, hub_env
from lwq_app.cli import main
from lwq_app.core.hub import provenance
from lwq_app.core.hub.access import hub_access
from lwq_app.core.hub.cache_layout import partial_dir
from lwq_app.core.hub.download import DownloadRequest, download_model, plan_download
from lwq_app.core.hub.transfer import download_files, pending_downloads
from lwq_app.core.jobs.errors import Cancelled, DownloadError, InputError, OutputError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress

REPO = "org/tiny"
WEIGHTS = os.urandom(600_000)
FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}',
    "tokenizer.json": b'{"version": "1.0"}',
    "tokenizer_config.json": b'{"chat_template": "{{ messages }}"}',
    "model.safetensors": WEIGHTS,
    "pytorch_model.bin": b"\0duplicate weights",
    "original/consolidated.00.pth": b"\0more duplicates",
}
WANTED = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with hub_env(tmp_path, monkeypatch) as server:
        server.add_model(REPO, FILES, card="# tiny\n")
        yield server


def hf_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub"


def under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def no_temp_files(*folders: Path) -> bool:
    names = [p.name for f in folders for p in under(f)]
    return not [n for n in names if n.endswith(".incomplete") or ".lwq-" in n]


def test_plan_takes_sizes_and_lfs_sha256_from_the_model_info(hub: HubServer) -> None:
    plan = plan_download(DownloadRequest(REPO), hub_access())
    assert plan.commit == hub.commits(REPO)[-1]
    assert plan.selection.kind == "safetensors"
    assert sorted(f.path for f in plan.files) == sorted([*WANTED, "README.md"])
    by = {f.path: f for f in plan.files}
    assert by["model.safetensors"].size == len(WEIGHTS)
    assert by["model.safetensors"].sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert by["model.safetensors"].etag == by["model.safetensors"].sha256
    config = FILES["config.json"]
    assert by["config.json"].sha256 is None  # kept in git: its etag is the git blob sha1
    assert by["config.json"].etag == hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    assert plan.total_bytes == sum(f.size for f in plan.files) and plan.have_bytes == 0
    [info] = [q for q in hub.log if q.path == f"/api/models/{REPO}/revision/main"]
    assert "blobs" in info.query  # files_metadata: sizes and LFS sha256
    assert not [q for q in hub.log if "/resolve/" in q.path]  # one request plans it


def test_download_lands_in_the_standard_cache_and_is_verified(
    hub: HubServer, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    events: list[Progress] = []
    r = download_model(DownloadRequest(REPO), progress=events.append)
    cache = hf_cache(tmp_path)
    snapshot = cache / "models--org--tiny" / "snapshots" / r.commit
    assert r.path == snapshot and r.kind == "safetensors" and r.commit == hub.commits(REPO)[-1]
    assert (cache / "models--org--tiny" / "refs" / "main").read_text() == r.commit
    for name in WANTED:
        hit = try_to_load_from_cache(REPO, name, cache_dir=cache)
        assert hit == str(snapshot / name) and Path(hit).read_bytes() == FILES[name]
        assert os.readlink(snapshot / name).startswith("../../blobs/")
    weights = hf_hub_download(REPO, "model.safetensors", cache_dir=cache, local_files_only=True)
    assert Path(weights).resolve().name == hashlib.sha256(WEIGHTS).hexdigest()
    assert not (snapshot / "pytorch_model.bin").exists() and not (snapshot / "original").exists()
    total = sum(f.stat().st_size for f in r.files)
    assert r.downloaded_bytes == total and r.resumed_bytes == 0
    loads = [e for e in events if e.phase is Phase.DOWNLOAD and e.total > 1]
    assert {e.total for e in loads} == {total} and loads[-1].done == total
    verify = [e for e in events if e.phase is Phase.VERIFY]
    assert verify and verify[-1].done == verify[-1].total == total
    assert [e.phase for e in events].index(Phase.VERIFY) > [e.phase for e in events].index(
        Phase.DOWNLOAD
    )
    assert provenance.source_of(snapshot / "config.json") == provenance.Source(REPO, r.commit)
    assert pending_downloads() == [] and no_temp_files(cache, partial_dir())

    gets = len(hub.downloads(REPO, "model.safetensors"))
    again = download_model(DownloadRequest(REPO))
    assert again.path == r.path and again.downloaded_bytes == 0
    assert len(hub.downloads(REPO, "model.safetensors")) == gets == 1


def test_a_cut_download_is_resumed_by_the_next_call(hub: HubServer, tmp_path: Path) -> None:
    cut = 200_000
    hub.cut_after(REPO, "model.safetensors", cut)
    access = hub_access()
    plan = plan_download(DownloadRequest(REPO), access)
    with pytest.raises(DownloadError, match=rf"{REPO}: model.safetensors: the download broke off"):
        download_files(access, plan.files, retries=0)
    [pending] = pending_downloads()
    assert pending.repo == REPO and pending.have_bytes >= cut
    assert pending.total_bytes == plan.total_bytes
    assert not (hf_cache(tmp_path) / "models--org--tiny" / "snapshots").exists()

    r = download_model(DownloadRequest(REPO))
    first, second = hub.downloads(REPO, "model.safetensors")
    assert first.range is None and first.body_bytes_sent == cut
    assert second.range == f"bytes={cut}-" and second.status == 206
    assert second.body_bytes_sent == len(WEIGHTS) - cut  # the first bytes were not sent again
    assert r.resumed_bytes >= cut and (r.path / "model.safetensors").read_bytes() == WEIGHTS
    assert pending_downloads() == []


def test_a_dropped_connection_is_retried_within_the_call(hub: HubServer) -> None:
    hub.cut_after(REPO, "model.safetensors", 100_000)
    r = download_model(DownloadRequest(REPO))
    ranges = [q.range for q in hub.downloads(REPO, "model.safetensors")]
    assert ranges == [None, "bytes=100000-"]
    assert (r.path / "model.safetensors").read_bytes() == WEIGHTS


def test_damaged_bytes_are_refused_and_removed(hub: HubServer, tmp_path: Path) -> None:
    hub.damage(REPO, "model.safetensors")
    true = hashlib.sha256(WEIGHTS).hexdigest()
    with pytest.raises(DownloadError) as e:
        download_model(DownloadRequest(REPO))
    msg = str(e.value)
    assert msg.startswith(f"{REPO}: model.safetensors: the downloaded bytes have sha256 ")
    assert f"the Hub announces {true}: refused and removed" in msg and "\n" not in msg
    got = msg.split("sha256 ")[1].split(",")[0]
    assert len(got) == 64 and got != true
    repo_dir = hf_cache(tmp_path) / "models--org--tiny"
    assert not (repo_dir / "blobs" / true).exists()
    assert try_cached(tmp_path, "model.safetensors") is None
    assert try_cached(tmp_path, "config.json") is not None  # the sound files are kept
    assert not [p for p in under(partial_dir()) if "model.safetensors" in p.read_text("latin-1")]
    assert [p.files for p in pending_downloads()] == []


def try_cached(tmp_path: Path, name: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(REPO, name, cache_dir=hf_cache(tmp_path))
    return hit if isinstance(hit, str) else None


def test_cancel_kills_the_child_and_resume_continues(hub: HubServer, tmp_path: Path) -> None:
    """Through the Hub's redirect of LFS files to its CDN, as huggingface.co serves them."""
    hub.lfs_redirect = True
    hub.slow(REPO, "model.safetensors", 400_000)
    token = CancelToken()
    seen: list[float] = []

    def watch(p: Progress) -> None:
        if p.phase is Phase.DOWNLOAD and p.item == "model.safetensors" and p.done > 150_000:
            seen.append(p.done)
            threading.Thread(target=token.cancel).start()  # as the GUI's Cancel button does

    started = time.monotonic()
    with pytest.raises(Cancelled):
        download_model(DownloadRequest(REPO), progress=watch, cancel=token)
    assert seen and time.monotonic() - started < 10
    cache = hf_cache(tmp_path)
    assert try_cached(tmp_path, "model.safetensors") is None  # nothing under a final name
    assert no_temp_files(cache, partial_dir())  # and no *.incomplete anywhere
    [pending] = pending_downloads()
    have = pending.have_bytes
    assert 0 < have < pending.total_bytes

    hub.slow(REPO, "model.safetensors", 1 << 30)
    r = download_model(DownloadRequest(*[pending.repo], revision=pending.revision))  # Resume
    gets = hub.downloads(REPO, "model.safetensors")
    assert [q.path.startswith("/cdn/") for q in gets] == [False, True, False, True]  # 302, bytes
    last = gets[-1]
    assert last.status == 206 and last.range is not None and last.range.startswith("bytes=")
    resumed_at = int(last.range.split("=")[1].rstrip("-"))
    assert resumed_at > 0 and last.body_bytes_sent == len(WEIGHTS) - resumed_at
    assert (r.path / "model.safetensors").read_bytes() == WEIGHTS and r.resumed_bytes > 0


def test_a_gated_repo_without_a_token_says_so(hub: HubServer, tmp_path: Path) -> None:
    hub.add_model(
        "org/gated", {"model.safetensors": b"\0" * 1000, "config.json": b"{}"}, gated=True
    )
    with pytest.raises(
        DownloadError, match=r"^org/gated: config.json on .* is gated: accept its .*no token is set"
    ):
        download_model(DownloadRequest("org/gated"))
    assert pending_downloads() == []  # refused before the download began
    hub.add_token("hf_reader", "reader", role="read")
    hub.add_token("hf_other", "other", role="read")
    hub.gate("org/gated", {"hf_reader"})
    with pytest.raises(DownloadError, match=r"is gated: .*the token given was refused"):
        download_model(DownloadRequest("org/gated", token="hf_other"))
    (tmp_path / "hf" / "token").write_text("hf_reader\n")  # the saved token (`hf auth login`)
    r = download_model(DownloadRequest("org/gated"))
    assert (r.path / "config.json").read_bytes() == b"{}"


@pytest.mark.parametrize(
    ("repo", "patterns", "error", "match"),
    [
        ("org/missing", (), DownloadError, r"^org/missing on http://127.0.0.1:\d+: no such repo"),
        ("not a repo", (), InputError, r"'not a repo' is not a Hub repo id"),
        (REPO, ("*.gguf",), InputError, r"no file of the repo matches '\*.gguf'"),
    ],
)
def test_bad_requests_get_one_line(
    hub: HubServer, repo: str, patterns: tuple[str, ...], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        download_model(DownloadRequest(repo, patterns))


def test_the_disk_is_checked_before_any_byte(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 1000))
    with pytest.raises(OutputError, match=r"not enough disk space.*converting it to an F16 GGUF"):
        download_model(DownloadRequest(REPO))
    assert not hub.downloads(REPO, "model.safetensors")


def test_a_gguf_repo_gives_the_full_precision_file(hub: HubServer) -> None:
    files = {f"m-{t}.gguf": t.encode() * 1000 for t in ("Q4_K_M", "F16", "Q8_0")}
    hub.add_model("org/m-GGUF", files)
    r = download_model(DownloadRequest("org/m-GGUF"))
    assert r.kind == "gguf" and r.path.name == "m-F16.gguf" and r.files == (r.path,)
    assert r.path.read_bytes() == files["m-F16.gguf"]
    assert provenance.source_of(r.path) == provenance.Source("org/m-GGUF", r.commit)


def test_offline_the_cached_snapshot_is_used(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = download_model(DownloadRequest(REPO))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(hub.log)
    r = download_model(DownloadRequest(REPO))
    assert r.path == first.path and r.downloaded_bytes == 0 and len(hub.log) == seen
    with pytest.raises(DownloadError, match=r"org/other .*not in the Hugging Face cache.*OFFLINE"):
        download_model(DownloadRequest("org/other"))


def test_cli_prints_the_path_and_json(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "download", REPO, "config.json", "--revision", "main"]) == 0
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    snapshot = Path(line)
    assert snapshot.name == hub.commits(REPO)[-1] and (snapshot / "config.json").is_file()
    assert not (snapshot / "model.safetensors").exists()  # the pattern picked one file

    assert main(["hub", "download", REPO, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["repo"] == REPO and d["kind"] == "safetensors" and d["path"] == str(snapshot)
    assert d["downloaded_bytes"] == len(WEIGHTS) + len(FILES["tokenizer.json"]) + len(
        FILES["tokenizer_config.json"]
    ) + len(b"# tiny\n")

    assert main(["hub", "download", "--pending"]) == 0
    assert capsys.readouterr().out == "no unfinished downloads\n"
    hub.add_model(REPO, {**FILES, "model.safetensors": WEIGHTS[::-1]})  # a new commit
    hub.cut_after(REPO, "model.safetensors", 1000)
    access = hub_access()
    with pytest.raises(DownloadError):
        download_files(access, plan_download(DownloadRequest(REPO), access).files, retries=0)
    assert main(["hub", "download", "--pending"]) == 0
    assert capsys.readouterr().out.startswith(f"{REPO}@main: 1.00 KB of 600.00 KB in 1 file(s)")
    assert main(["hub", "download", REPO, "--discard"]) == 0
    assert capsys.readouterr().out == f"{REPO}: discarded 1.00 KB of unfinished downloads\n"
    assert pending_downloads() == []
    assert main(["hub", "download", "org/missing"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lwq: error: org/missing on " in err


def test_a_converted_snapshot_can_be_deleted_and_only_a_snapshot(
    hub: HubServer, tmp_path: Path
) -> None:
    """What `lwq convert --delete-source` and the app's "then delete the safetensors" do once
    the GGUF is written: the snapshot and the blobs only it uses go; a blob another snapshot
    shares stays; a folder that is not a cached snapshot is refused before any conversion."""
    from lwq_app.core.hub.cache_layout import delete_snapshot
    from lwq_app.core.hub.convert import ConvertRequest, convert_model

    old = download_model(DownloadRequest(REPO))
    hub.add_model(REPO, {**FILES, "model.safetensors": os.urandom(300_000)})  # a new commit
    new = download_model(DownloadRequest(REPO))
    assert new.commit != old.commit
    cache = hf_cache(tmp_path)
    blobs = cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    shared = (old.path / "config.json").resolve()  # the same bytes in both commits
    freed = delete_snapshot(new.path, cache)
    assert freed >= 300_000 and not new.path.exists()
    assert shared.is_file() and (old.path / "model.safetensors").is_file()
    assert len(list(blobs.iterdir())) == len(WANTED) + 1  # old's files and README.md
    with pytest.raises(InputError, match="not a downloaded snapshot"):
        convert_model(ConvertRequest(tmp_path, "F16", tmp_path / "x.gguf", delete_source=True))
    assert old.path.is_dir() and not (tmp_path / "x.gguf").exists()
