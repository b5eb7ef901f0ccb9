"""The project as the app sees it: project.json v2 (and the v1 migration), the lock between
processes, opening float and quantized models (upcast once, cancel leaves nothing) and
adopting an imatrix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fixtures
from lwq_app.core.evaluate import TargetSpec, builtin_profiles
from lwq_app.core.jobs.errors import Cancelled, ImatrixError, InputError, ModelFileError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.modelfile.hashing import model_hash
from lwq_app.core.modelfile.imatrix_file import Imatrix, ImatrixEntry, read_imatrix, write_imatrix
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.optimize.calibration import CalibrateRequest, calibrate
from lwq_app.core.results.project import ensure_project, project_dir, project_path
from lwq_app.core.results.workspace import (
    BASE_F16,
    PROJECT_VERSION,
    OpenProjectRequest,
    ProjectLock,
    ProjectLocked,
    ProjectState,
    attach_imatrix,
    load_state,
    open_project,
    project_imatrix_path,
    save_state,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("LWQ_DATA_DIR", str(d))
    return d


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A private copy of a small float GGUF."""
    p = tmp_path / "models" / "small.gguf"
    p.parent.mkdir()
    shutil.copyfile(fixtures.synthetic("gqa4-untied"), p)
    return p


# --- project.json -----------------------------------------------------------------------


def test_v1_project_is_migrated(tmp_path: Path, model: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    gone = tmp_path / "gone.gguf"
    v1 = {
        "format": "lwq-project", "version": 1, "name": "small", "architecture": "llama",
        "tensor_data_sha256": "a" * 64, "paths": [str(gone), str(model)],
        "created": "2025-01-02T03:04:05Z",
    }  # fmt: skip
    (folder / "project.json").write_text(json.dumps(v1))
    st = load_state(folder)
    assert st.version == PROJECT_VERSION == 2
    assert st.base_model == model  # the first recorded path that still exists
    assert st.sources == (gone, model)
    assert (st.imatrix, st.imatrix_dataset, st.target, dict(st.plans)) == (None, None, None, {})
    assert st.created == "2025-01-02T03:04:05Z"

    saved = save_state(folder, st)
    assert saved.modified and saved.created == st.created
    d = json.loads((folder / "project.json").read_text())
    assert d["version"] == 2 and d["base_model"] == str(model) and d["paths"] == v1["paths"]
    assert load_state(folder) == saved
    assert not list(folder.glob("*.lwq-tmp"))


def test_state_round_trips_with_target_and_imatrix(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    target = TargetSpec.from_profile(builtin_profiles()[1], context=8192, gpu_layers=20)
    st = ProjectState(
        2, "m", "llama", "b" * 64, tmp_path / "m.gguf", (tmp_path / "m.gguf",),
        imatrix=folder / "imatrix.gguf", imatrix_dataset="wiki", target=target,
        plans={"mine": {"types": {}}},
    )  # fmt: skip
    saved = save_state(folder, st)
    back = load_state(folder)
    assert back == saved and back.target == target and back.imatrix == folder / "imatrix.gguf"
    assert json.loads((folder / "project.json").read_text())["imatrix"] == "imatrix.gguf"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 3}, r"project version 3 is newer than this lwq reads \(2\)"),
        ({"version": "2"}, "bad project version"),
        ({"base_model": 5}, "field 'base_model' must be a text"),
        ({"imatrix": "../elsewhere.gguf"}, "field 'imatrix' must name a file in the project"),
        ({"target": {"profile": "x"}}, "target: field 'backend'"),
        ({"target": {**TargetSpec("p", "CPU", 0, 1, False).to_json(), "context": 8}},
         "target: field 'context' must be an integer >= 16"),
        ({"plans": []}, "field 'plans' must be an object"),
    ],
)  # fmt: skip
def test_bad_project_json_names_file_and_field(tmp_path: Path, change: dict, match: str) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    good = ProjectState(2, "m", "llama", "c" * 64, tmp_path / "m.gguf")
    d = {**good.to_json(folder), **change}
    (folder / "project.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match=match) as e:
        load_state(folder)
    assert str(folder / "project.json") in str(e.value)


def test_malformed_or_missing_project_json(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    with pytest.raises(InputError, match="not an lwq project folder"):
        load_state(folder)
    (folder / "project.json").write_text("{nope")
    with pytest.raises(InputError, match="unreadable project file") as e:
        load_state(folder)
    assert "project.json" in str(e.value)


def test_ensure_project_keeps_the_v2_state(model: Path, tmp_path: Path) -> None:
    folder = ensure_project(model)
    st = load_state(folder)
    assert st.base_model == model.resolve() and st.sources == (model.resolve(),)
    target = TargetSpec("8 GB laptop CPU", "CPU", 0, 8 << 30, False)
    save_state(folder, ProjectState(**{**st.__dict__, "target": target}))
    other = tmp_path / "copy.gguf"
    shutil.copyfile(model, other)
    ensure_project(other)
    again = load_state(folder)
    assert again.target == target and again.sources == (model.resolve(), other.resolve())


# --- the lock ---------------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lwq_app.core.results.project_lock import ProjectLock
    lock = ProjectLock.acquire(Path(sys.argv[1]), "lwq app (test)")
    print("locked", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)
    """
)


def _holder(folder: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def test_lock_held_by_another_process(model: Path, tmp_path: Path) -> None:
    folder = ensure_project(model)
    child = _holder(folder)
    try:
        with pytest.raises(ProjectLocked) as e:
            ProjectLock.acquire(folder, "lwq app")
        assert str(e.value) == (
            f"{folder}: open in lwq app (test) (pid {child.pid}); close it there first"
        )
        other = tmp_path / "renamed.gguf"
        shutil.copyfile(model, other)
        with pytest.raises(ProjectLocked, match=f"pid {child.pid}"):
            ensure_project(other)  # a new path would be written into project.json
        assert ensure_project(model) == folder  # nothing to write: fine
        before = (folder / "project.json").read_text()
        with pytest.raises(ProjectLocked):
            save_state(folder, load_state(folder))
        assert (folder / "project.json").read_text() == before
        assert isinstance(e.value, InputError)  # the CLI shows it as bad input
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "released"
    finally:
        child.kill()
        child.wait()
    assert not (folder / ".lock").exists()
    with ProjectLock.acquire(folder, "lwq app") as lock:
        assert lock.held and (folder / ".lock").exists()
        ensure_project(other)  # this process holds it: its own writes pass
        with pytest.raises(ProjectLocked, match=f"pid {os.getpid()}"):
            ProjectLock.acquire(folder, "a second window")
    assert not (folder / ".lock").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(model: Path) -> None:
    folder = ensure_project(model)
    child = _holder(folder)
    child.kill()  # dies holding the lock
    child.wait()
    info = json.loads((folder / ".lock").read_text())
    assert info["pid"] == child.pid and info["owner"] == "lwq app (test)"
    assert set(info) == {"pid", "owner", "host", "since"}
    ensure_project(model)
    with ProjectLock.acquire(folder, "lwq app") as lock:
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
        assert lock.info.owner == "lwq app"
    (folder / ".lock").write_text("not json")  # damaged: stale too
    ProjectLock.acquire(folder, "lwq app").release()


def test_calibrate_refuses_a_locked_project(smollm2_f16: Path, golden_imatrix: Path) -> None:
    folder = project_dir(smollm2_f16)
    folder.mkdir(parents=True)
    child = _holder(folder)
    try:
        with pytest.raises(ProjectLocked, match="open in lwq app"):
            calibrate(CalibrateRequest(smollm2_f16, golden_imatrix))
    finally:
        child.kill()
        child.wait()
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing written


# --- opening ----------------------------------------------------------------------------


def test_open_float_model_and_its_folder(model: Path, data: Path) -> None:
    events: list[Progress] = []
    r = open_project(OpenProjectRequest(model), progress=events.append)
    digest = open_model(model).tensor_data_hash()
    assert r.folder == project_path(digest) and not r.upcast
    assert r.model.path == model and r.source.path == model
    assert r.state.base_model == model.resolve() and r.state.sources == (model.resolve(),)
    assert r.state.tensor_data_sha256 == digest and r.state.name == "lwq-synthetic-llama"
    assert {p.phase for p in events} == {Phase.HASH}
    assert load_state(r.folder) == r.state
    again = open_project(OpenProjectRequest(r.folder))
    assert again.folder == r.folder and again.state == r.state and not again.upcast
    assert sorted(p.name for p in model.parent.iterdir()) == ["small.gguf"]


def test_open_bad_files_fail_fast_and_write_nothing(tmp_path: Path, data: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello, not a model")
    with pytest.raises(ModelFileError, match=r"notes\.gguf"):
        open_project(OpenProjectRequest(bad))
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(fixtures.synthetic("gqa4-untied").read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"cut\.gguf"):
        open_project(OpenProjectRequest(truncated))
    with pytest.raises(InputError, match="not an lwq project folder"):
        open_project(OpenProjectRequest(tmp_path))
    assert not (data / "projects").exists()


@pytest.mark.slow
def test_open_quantized_upcasts_once_into_the_project(
    smollm2_q4_1: Path, smollm2_f16: Path, tmp_path: Path, data: Path
) -> None:
    src = tmp_path / "downloads" / "smollm2-q4_1.gguf"
    src.parent.mkdir()
    shutil.copyfile(smollm2_q4_1, src)
    events: list[Progress] = []
    r = open_project(OpenProjectRequest(src), progress=events.append)
    f16_digest = open_model(smollm2_f16).tensor_data_hash()  # the fixture's own upcast
    assert r.upcast and r.folder == project_path(f16_digest)
    base = r.folder / BASE_F16
    assert r.model.path == base and r.state.base_model == base.resolve()
    assert r.source.path == src and r.state.sources == (src.resolve(),)
    assert {t.type for t in r.model.tensors} <= {"F16", "F32"}
    assert [p.name for p in src.parent.iterdir()] == [src.name]  # nothing beside the source
    overall = [p.overall for p in events]
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)
    assert {Phase.HASH, Phase.UPCAST} <= {p.phase for p in events}
    sources = json.loads((data / "projects" / "sources.json").read_text())["sources"]
    assert sources == {model_hash(src): f16_digest}
    assert not list(data.rglob("*.lwq-tmp"))

    again = open_project(OpenProjectRequest(src))
    assert not again.upcast and again.folder == r.folder and again.model.path == base
    assert model_hash(base) == f16_digest  # recorded: the moved file is not hashed again
    assert open_project(OpenProjectRequest(r.folder)).state == again.state


def test_cancel_mid_upcast_leaves_nothing(smollm2_q4_1: Path, data: Path) -> None:
    cancel = CancelToken()
    seen: list[float] = []

    def sink(p: Progress) -> None:
        if p.phase is Phase.UPCAST:
            seen.append(p.fraction)
            if p.fraction > 0.2:
                cancel.cancel()

    with pytest.raises(Cancelled):
        open_project(OpenProjectRequest(smollm2_q4_1), progress=sink, cancel=cancel)
    assert seen and max(seen) < 0.5
    assert not [p for p in data.rglob("*") if ".gguf" in p.name]
    assert not (data / "projects" / "sources.json").exists()
    assert not list(data.rglob("project.json"))


# --- the imatrix ------------------------------------------------------------------------


@pytest.fixture
def smol_project(smollm2_f16: Path):  # type: ignore[no-untyped-def]
    r = open_project(OpenProjectRequest(smollm2_f16))
    return r.folder, r.state, r.model


def test_attach_gguf_imatrix(smol_project, golden_imatrix: Path) -> None:  # type: ignore[no-untyped-def]
    folder, state, model = smol_project
    st = attach_imatrix(folder, state, golden_imatrix, model)
    dest = project_imatrix_path(folder)
    assert dest == folder / "imatrix.gguf" and st.imatrix == dest
    assert dest.read_bytes() == golden_imatrix.read_bytes()
    assert st.imatrix_dataset == "; ".join(read_imatrix(golden_imatrix).datasets)
    assert load_state(folder) == st
    again = attach_imatrix(folder, st, dest, model)  # the app's collection wrote it there
    assert again.imatrix == dest and dest.read_bytes() == golden_imatrix.read_bytes()


def test_attach_legacy_dat_becomes_gguf(smol_project, golden_imatrix: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, state, model = smol_project
    im = read_imatrix(golden_imatrix)
    dat = tmp_path / "old.dat"
    write_imatrix(im, dat)
    attach_imatrix(folder, state, dat, model)
    back = read_imatrix(project_imatrix_path(folder))
    assert not back.is_legacy and set(back.entries) <= set(im.entries)
    name = "blk.7.ffn_down.weight"
    assert np.allclose(back.entries[name].weights(), im.entries[name].weights(), rtol=1e-6)


def test_attach_imatrix_of_another_model(smol_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, state, model = smol_project
    other = tmp_path / "other.imatrix.gguf"
    entries = {
        "blk.0.attn_k.weight": ImatrixEntry(
            "blk.0.attn_k.weight", np.ones((1, 256), np.float32), np.ones(1, np.float32)
        )
    }
    write_imatrix(Imatrix(entries, ("x",), 1, 512), other)
    with pytest.raises(ImatrixError) as e:
        attach_imatrix(folder, state, other, model)
    assert str(other) in str(e.value) and "blk.0.attn_k.weight" in str(e.value)
    unknown = {"blk.99.attn_q.weight": ImatrixEntry(
        "blk.99.attn_q.weight", np.ones((1, 576), np.float32), np.ones(1, np.float32))}  # fmt: skip
    write_imatrix(Imatrix(unknown, ("x",), 1, 512), other)
    with pytest.raises(ImatrixError, match=r"blk\.99\.attn_q\.weight is not a tensor of"):
        attach_imatrix(folder, state, other, model)
    assert not project_imatrix_path(folder).exists() and load_state(folder) == state


def test_attach_checks_the_expert_count(tmp_path: Path) -> None:
    moe = open_model(fixtures.synthetic("moe8"))
    r = open_project(OpenProjectRequest(moe.path))
    name = "blk.0.ffn_down_exps.weight"
    ne0 = moe.tensor(name).ne0
    assert moe.tensor(name).n_experts == 8
    good = {name: ImatrixEntry(name, np.ones((8, ne0), np.float32), np.ones(8, np.float32))}
    path = tmp_path / "moe.imatrix.gguf"
    write_imatrix(Imatrix(good, ("x",), 1, 512), path)
    assert attach_imatrix(r.folder, r.state, path, moe).imatrix is not None
    # the same number of values as 4 experts of rows twice as long: another model
    bad = {name: ImatrixEntry(name, np.ones((4, 2 * ne0), np.float32), np.ones(4, np.float32))}
    write_imatrix(Imatrix(bad, ("x",), 1, 512), path)
    with pytest.raises(ImatrixError, match=f"{name} has rows of {2 * ne0} for 4 expert"):
        attach_imatrix(r.folder, r.state, path, moe)


def test_open_split_float_model(tmp_path: Path) -> None:
    """The first shard opens the split model; same weights as the single file, same project."""
    first = fixtures.make_synthetic("gqa4-untied", tmp_path / "split.gguf", split_max_tensors=20)
    r = open_project(OpenProjectRequest(first))
    whole = open_model(fixtures.synthetic("gqa4-untied")).tensor_data_hash()
    assert r.folder == project_path(whole) and len(r.model.paths) > 1
    assert r.state.base_model == first.resolve() and not r.upcast
