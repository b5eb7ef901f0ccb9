"""Per-model project folders: data dir, cached model hashes, project.json, calibration lookup."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import platformdirs
import pytest

import fixtures
from lwq_app.core.jobs.errors import InputError
from lwq_app.core.jobs.paths import data_dir
from lwq_app.core.modelfile import hashing
from lwq_app.core.modelfile.hashing import model_hash
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.optimize.calibration import Calibration, CalibrationPoint
from lwq_app.core.results.project import (
    calibration_path,
    ensure_project,
    find_calibration,
    project_dir,
)

FAKE = "f" * 64


@pytest.fixture(autouse=True)
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("LWQ_DATA_DIR", str(d))
    return d


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A private copy of a small real GGUF, free to touch and edit."""
    p = tmp_path / "models" / "small.gguf"
    p.parent.mkdir()
    shutil.copyfile(fixtures.synthetic("gqa4-untied"), p)
    return p


def _index(data: Path) -> dict:
    return json.loads((data / hashing.HASH_INDEX).read_text())["models"]


def _fake_cached_hash(data: Path, model: Path) -> None:
    """Replace the cached hash: if model_hash returns it, the file was not hashed again."""
    index = json.loads((data / hashing.HASH_INDEX).read_text())
    index["models"][str(model.resolve())]["sha256"] = FAKE
    (data / hashing.HASH_INDEX).write_text(json.dumps(index))


def test_data_dir_from_env_else_platformdirs(
    data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert data_dir() == data
    monkeypatch.setenv("LWQ_DATA_DIR", "~/lwq-data")
    assert data_dir() == Path.home() / "lwq-data"
    monkeypatch.delenv("LWQ_DATA_DIR")
    assert data_dir() == Path(platformdirs.user_data_dir("lwq"))


def test_model_hash_is_cached_until_size_or_mtime_changes(data: Path, model: Path) -> None:
    real = open_model(model).tensor_data_hash()
    assert model_hash(model) == real
    entry = _index(data)[str(model.resolve())]
    st = model.stat()
    assert entry == {"files": [[str(model.resolve()), st.st_size, st.st_mtime_ns]], "sha256": real}

    _fake_cached_hash(data, model)
    assert model_hash(model) == FAKE  # same size and mtime: the index answers
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert model_hash(model) == real  # newer mtime: hashed again

    _fake_cached_hash(data, model)
    st = model.stat()
    with model.open("ab") as f:
        f.write(b"\0" * 32)  # trailing bytes change the size, not the tensor data
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert model.stat().st_mtime_ns == st.st_mtime_ns
    assert model_hash(model) == real  # other size: hashed again


def test_hash_index_damaged_or_unwritable_is_only_a_cache(
    data: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = open_model(model).tensor_data_hash()
    data.mkdir()
    (data / hashing.HASH_INDEX).write_text("{not json")
    assert model_hash(model) == real
    assert _index(data)[str(model.resolve())]["sha256"] == real  # rebuilt

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LWQ_DATA_DIR", str(blocker / "data"))  # cannot be created
    assert model_hash(model) == real


def test_index_forgets_deleted_models(data: Path, model: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    shutil.copyfile(model, other)
    model_hash(other)
    other.unlink()
    model_hash(model)
    assert list(_index(data)) == [str(model.resolve())]


def test_project_is_keyed_by_weights_and_records_paths(
    data: Path, model: Path, tmp_path: Path
) -> None:
    digest = open_model(model).tensor_data_hash()
    folder = project_dir(model)
    assert folder == data / "projects" / digest[:16] and not folder.exists()
    assert ensure_project(model) == folder
    meta = json.loads((folder / "project.json").read_text())
    assert meta["format"] == "lwq-project" and meta["tensor_data_sha256"] == digest
    assert meta["name"] == "lwq-synthetic-llama" and meta["architecture"] == "llama"
    assert meta["paths"] == [str(model.resolve())]

    moved = tmp_path / "elsewhere" / "renamed.gguf"
    moved.parent.mkdir()
    shutil.copyfile(model, moved)
    assert project_dir(moved) == folder  # same weights, same project
    ensure_project(moved)
    ensure_project(model)
    again = json.loads((folder / "project.json").read_text())
    assert again["paths"] == [str(model.resolve()), str(moved.resolve())]
    assert again["created"] == meta["created"]
    assert not list(folder.glob("*.lwq-tmp"))


def test_edited_weights_get_their_own_project(model: Path, tmp_path: Path) -> None:
    edited = tmp_path / "edited.gguf"
    shutil.copyfile(model, edited)
    t = open_model(edited).tensors[-1]
    with edited.open("r+b") as f:
        f.seek(t.data_offset)
        b = f.read(1)
        f.seek(t.data_offset)
        f.write(bytes([b[0] ^ 0xFF]))
    assert project_dir(edited) != project_dir(model)


def test_project_json_of_another_model_is_rejected(model: Path) -> None:
    folder = project_dir(model)
    folder.mkdir(parents=True)
    (folder / "project.json").write_text(
        json.dumps({"format": "lwq-project", "tensor_data_sha256": FAKE, "paths": []})
    )
    with pytest.raises(InputError, match=r"project\.json: belongs to another model"):
        ensure_project(model)
    (folder / "project.json").write_text("[]")
    with pytest.raises(InputError, match="not an lwq project file"):
        ensure_project(model)


def _calibration(model_digest: str, imatrix_digest: str) -> Calibration:
    pts = (CalibrationPoint("attn_v", (0, 1), "Q4_0", 2.0, 0.01),)
    return Calibration(model_digest, imatrix_digest, 0.001, pts, {"n_chunks": 1})


def test_calibration_lookup_and_mismatch(model: Path) -> None:
    digest, imx = model_hash(model), "a" * 64
    assert find_calibration(digest, imx) is None
    path = calibration_path(digest, imx)
    assert path == project_dir(model) / f"calibration-{'a' * 12}.json"
    ensure_project(model)
    _calibration(digest, imx).save(path)
    assert find_calibration(digest, imx) == path
    assert find_calibration(digest, "b" * 64) is None
    cal = Calibration.load(path)
    assert cal == _calibration(digest, imx)
    cal.check(path, digest, imx)
    with pytest.raises(InputError, match="another model") as e:
        cal.check(path, FAKE, imx)
    assert str(path) in str(e.value)
    with pytest.raises(InputError, match=r"measured with imatrix aaaaaaaaaaaa…") as e:
        cal.check(path, digest, "b" * 64)
    assert str(path) in str(e.value) and "imatrix bbbbbbbbbbbb…" in str(e.value)
    with pytest.raises(InputError, match="uses no imatrix"):
        cal.check(path, digest, "none")


def test_calibration_without_settings_still_loads(tmp_path: Path) -> None:
    """Files saved before ``settings`` existed (benchmarks/plan_quality.py) stay readable."""
    p = tmp_path / "old.json"
    d = {"model_hash": "m", "imatrix_hash": "i", "baseline_kld": 0.0, "points": []}
    p.write_text(json.dumps(d))
    assert Calibration.load(p).settings == {}
    p.write_text(json.dumps({**d, "settings": 3}))
    with pytest.raises(InputError, match="not an lwq calibration"):
        Calibration.load(p)
