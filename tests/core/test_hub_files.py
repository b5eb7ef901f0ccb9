"""What a Hub download takes (``repo_files.select_files``), the partial area's bookkeeping
(``pending_downloads``/``discard_pending``), provenance and the transfer rate: pure, no server.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from lwq_app.core.hub import provenance, repo_files
from lwq_app.core.hub.access import HubAccess
from lwq_app.core.hub.cache_layout import RemoteFile, partial_dir, repo_folder
from lwq_app.core.hub.repo_files import select_files
from lwq_app.core.hub.transfer import (
    TransferRate,
    discard_pending,
    have_bytes,
    pending_downloads,
)
from lwq_app.core.jobs.errors import InputError
from lwq_app.core.jobs.progress import Phase, Progress

LLAMA = [
    ".gitattributes",
    "LICENSE",
    "README.md",
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "original/consolidated.00.pth",
    "original/params.json",
    "original/tokenizer.model",
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model-00002-of-00002.bin",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "consolidated.safetensors",
    "flax_model.msgpack",
    "model.onnx",
]


def test_safetensors_repo_takes_shards_config_and_tokenizer_only() -> None:
    s = select_files(LLAMA)
    assert s.kind == "safetensors"
    assert s.files == (
        "README.md",
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    )
    assert set(s.files) | set(s.skipped) == set(LLAMA) and not set(s.files) & set(s.skipped)
    for dup in ("original/consolidated.00.pth", "consolidated.safetensors", "model.onnx"):
        assert dup in s.skipped
    assert "skipped" in s.note


def test_safetensors_win_over_gguf_and_siblings_may_be_objects() -> None:
    class Sibling:
        def __init__(self, name: str) -> None:
            self.rfilename = name

    names = ["model.safetensors", "config.json", "tokenizer.model", "model-f16.gguf"]
    s = select_files([Sibling(n) for n in names])
    assert s.kind == "safetensors"
    assert s.files == ("model.safetensors", "config.json", "tokenizer.model")


GGUF_REPO = [
    "README.md",
    "Model-Q4_K_M.gguf",
    "Model-Q8_0.gguf",
    "Model-Q6_K.gguf",
    "Model-IQ2_XXS.gguf",
    "mmproj-Model-F16.gguf",
    "BF16/Model-BF16-00002-of-00002.gguf",
    "BF16/Model-BF16-00001-of-00002.gguf",
    "Model-F16.gguf",
]


def test_gguf_repo_takes_the_bf16_shards_not_the_projector() -> None:
    s = select_files(GGUF_REPO)
    assert s.kind == "gguf"
    assert s.files == (
        "BF16/Model-BF16-00001-of-00002.gguf",
        "BF16/Model-BF16-00002-of-00002.gguf",
    )  # first shard first: it is the path a download hands out
    assert "BF16" in s.note and "full precision" in s.note


@pytest.mark.parametrize(
    ("names", "best"),
    [
        (["a-F32.gguf", "a-F16.gguf"], "a-F16.gguf"),
        (["a-f32.gguf", "a-Q8_0.gguf"], "a-f32.gguf"),
        (["a-Q4_K_M.gguf", "a-Q8_0.gguf", "a-Q6_K.gguf"], "a-Q8_0.gguf"),
        (["a-Q4_K_S.gguf", "a-Q4_K_M.gguf", "a-Q3_K_L.gguf"], "a-Q4_K_M.gguf"),
    ],
)
def test_gguf_preference(names: list[str], best: str) -> None:
    s = select_files(names)
    assert s.files == (best,)


def test_a_quantized_only_repo_says_why_it_needs_upcasting() -> None:
    s = select_files(["README.md", "m.Q4_K_M.gguf", "m.Q5_K_M.gguf"])
    assert s.files == ("m.Q5_K_M.gguf",)
    assert "upcasts" in s.note and "cannot regain" in s.note


def test_a_repo_without_weights_lwq_reads() -> None:
    s = select_files(["README.md", "pytorch_model.bin", "config.json"])
    assert s.kind == "none" and s.files == ()
    assert "pytorch_model.bin" in s.note and "safetensors" in s.note


def test_patterns_override_and_a_shard_brings_its_set() -> None:
    s = select_files(GGUF_REPO, ["*Q8_0*"])
    assert s.kind == "gguf" and s.files == ("Model-Q8_0.gguf",)
    assert repo_files.QUANTIZED_NOTE in s.note
    s = select_files(GGUF_REPO, ["Model-BF16-00002-of-00002.gguf"])  # the base name is enough
    assert s.files == (
        "BF16/Model-BF16-00002-of-00002.gguf",
        "BF16/Model-BF16-00001-of-00002.gguf",
    )
    assert s.note == ""
    s = select_files(LLAMA, ["config.json", "*.safetensors"])
    assert s.kind == "safetensors"
    assert "consolidated.safetensors" in s.files and "tokenizer.json" not in s.files
    with pytest.raises(InputError, match=r"no file of the repo matches '\*.gguf'; it has: "):
        select_files(LLAMA, ["*.gguf"])


# --- the partial area -------------------------------------------------------------------------


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubAccess:
    monkeypatch.setenv("LWQ_CACHE_DIR", str(tmp_path / "lwq"))
    return HubAccess("http://hub.invalid", None, tmp_path / "hf" / "hub", False, True)


def remote(path: str, size: int, repo: str = "org/m", revision: str = "main") -> RemoteFile:
    etag = f"{abs(hash((repo, path))):064x}"[-64:]
    return RemoteFile(repo, "model", path, revision, "c" * 40, size, etag, etag)


def leave_partial(f: RemoteFile, have: int) -> Path:
    """What a killed transfer leaves: the sidecar and ``have`` bytes."""
    folder = partial_dir() / repo_folder(Path(), f.repo).name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{f.etag}.json").write_text(json.dumps({**asdict(f), "url": "u"}))
    if have:
        (folder / f"{f.etag}.part").write_bytes(b"x" * have)
    return folder


def test_pending_downloads_group_files_by_repo_and_revision(caches: HubAccess) -> None:
    assert pending_downloads() == []
    a, b = remote("a.safetensors", 100), remote("b.safetensors", 50)
    other = remote("x.gguf", 10, repo="org/other", revision="v1")
    leave_partial(a, 40)
    leave_partial(b, 0)  # its sidecar was written before the first byte
    leave_partial(other, 10)
    (partial_dir() / "models--org--m" / "junk.json").write_text("{not json")
    [m, o] = pending_downloads()
    assert (m.repo, m.revision, m.files, m.have_bytes, m.total_bytes) == (
        "org/m",
        "main",
        ("a.safetensors", "b.safetensors"),
        40,
        150,
    )
    assert (o.repo, o.revision, o.have_bytes, o.total_bytes) == ("org/other", "v1", 10, 10)
    assert have_bytes(caches, [a, b]) == 40

    assert discard_pending("org/m", revision="v9") == 0  # another revision: kept
    assert discard_pending("org/m") == 40
    assert [p.repo for p in pending_downloads()] == ["org/other"]
    assert discard_pending("org/other", revision="c" * 40) == 10  # by commit too
    assert pending_downloads() == [] and not (partial_dir() / "models--org--other").exists()


def test_have_bytes_counts_what_the_cache_holds(caches: HubAccess) -> None:
    f = remote("config.json", 7)
    snap = repo_folder(caches.cache_dir, f.repo) / "snapshots" / f.commit / f.path
    snap.parent.mkdir(parents=True)
    snap.write_bytes(b"1234567")
    assert have_bytes(caches, [f, remote("b.bin", 5)]) == 7


# --- provenance and rate ----------------------------------------------------------------------


def test_provenance_finds_the_nearest_recorded_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LWQ_CACHE_DIR", str(tmp_path / "lwq"))
    snap = tmp_path / "snap"
    assert provenance.source_of(snap) is None
    provenance.record_source(snap, "org/m", "c" * 40, "main")
    provenance.record_source(tmp_path / "out.gguf", "org/m", "c" * 40, "v2")
    src = provenance.source_of(snap / "sub" / "model.safetensors")
    assert src == provenance.Source("org/m", "c" * 40, "main", "model")
    assert provenance.source_of(tmp_path / "out.gguf").revision == "v2"  # type: ignore[union-attr]
    assert provenance.source_of(tmp_path / "elsewhere.gguf") is None
    provenance.sources_path().write_text("{damaged")
    assert provenance.source_of(snap) is None  # a damaged record is no record
    provenance.record_source(snap, "org/n", "d" * 40)
    assert provenance.source_of(snap).repo == "org/n"  # type: ignore[union-attr]


def test_transfer_rate_is_the_recent_slope() -> None:
    rate = TransferRate(window=10)
    assert rate.update(Progress(Phase.DOWNLOAD, 0, 1000), now=0.0) == (None, None)
    assert rate.update(Progress(Phase.DOWNLOAD, 100, 1000), now=1.0) == (100.0, 9.0)
    assert rate.update(Progress(Phase.DOWNLOAD, 300, 1000), now=2.0) == (150.0, 700 / 150)
    assert rate.update(Progress(Phase.VERIFY, 10, 1000), now=2.5) == (None, None)  # new phase
