"""The project as the app sees it: open a model or a project folder, adopt an imatrix.

``open_project`` turns whatever the user opened into a project of a *float* model. A float
GGUF is its own base. A quantized one is never requantized (that compounds the error): it is
upcast to F16 once, into the projects folder, hashed, and moved into the project of that hash
as ``base-f16.gguf``; ``projects/sources.json`` remembers which project a quantized file led
to, so opening it again is instant. Nothing is ever written beside the user's file, and a
cancelled open leaves no partial file and records nothing.

The project's state (``ProjectState``, ``load_state``, ``save_state``) is in ``project``; the
lock that keeps two writers apart (``ProjectLock``) in ``project_lock``. Both are importable
from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from ..jobs.atomic import TMP_SUFFIX, atomic_output, atomic_write_text
from ..jobs.boundary import public_job
from ..jobs.errors import InputError, LwqError, ModelFileError, OutputError
from ..jobs.paths import data_dir
from ..jobs.progress import CancelToken, Phase, Phases, Progress, ProgressSink, check, no_progress
from ..modelfile.hashing import model_hash, record_model_hash
from ..modelfile.imatrix_file import read_imatrix, write_imatrix
from ..modelfile.inventory import ModelInfo, open_model
from ..modelfile.summary import is_float_model
from ..modelfile.upcast import UpcastRequest, upcast
from .project import (
    PROJECT_FILE,
    PROJECT_VERSION,
    ProjectState,
    load_state,
    make_folder,
    new_state,
    project_path,
    save_state,
)
from .project_lock import ProjectLock, ProjectLocked, check_unlocked

BASE_F16 = "base-f16.gguf"
IMATRIX_FILE = "imatrix.gguf"
SOURCES_FILE = "sources.json"
SOURCES_FORMAT = "lwq-project-sources"

__all__ = [
    "BASE_F16",
    "IMATRIX_FILE",
    "PROJECT_VERSION",
    "OpenProjectRequest",
    "OpenProjectResult",
    "ProjectLock",
    "ProjectLocked",
    "ProjectState",
    "attach_imatrix",
    "load_state",
    "open_project",
    "project_imatrix_path",
    "save_state",
]


def projects_dir() -> Path:
    return data_dir() / "projects"


def project_imatrix_path(folder: Path) -> Path:
    """Where the project's imatrix lives (and the app's collection writes, checkpoints too)."""
    return Path(folder) / IMATRIX_FILE


# --- quantized source -> project ------------------------------------------------------------


def _read_sources() -> dict[str, str]:
    """Source tensor-data hash -> project digest (only a cache: unreadable means empty)."""
    try:
        d = json.loads((projects_dir() / SOURCES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    rows = d.get("sources") if isinstance(d, dict) and d.get("format") == SOURCES_FORMAT else None
    if not isinstance(rows, dict):
        return {}
    return {k: v for k, v in rows.items() if isinstance(k, str) and isinstance(v, str)}


def _record_source(source_digest: str, project_digest: str) -> None:
    rows = _read_sources()
    rows[source_digest] = project_digest
    text = json.dumps({"format": SOURCES_FORMAT, "sources": rows}, indent=1) + "\n"
    with contextlib.suppress(OSError, LwqError):  # only a cache: the next open upcasts again
        atomic_write_text(projects_dir() / SOURCES_FILE, text)


def _existing_base(folder: Path, digest: str) -> tuple[ProjectState, ModelInfo] | None:
    """The project in ``folder`` and its base model, if both exist and the base still has
    the project's weights (its hash is cached, so this reads no tensor data)."""
    if not (folder / PROJECT_FILE).is_file():
        return None
    state = load_state(folder)
    if state.tensor_data_sha256 != digest or not state.base_model.is_file():
        return None
    try:
        base = open_model(state.base_model)
        if model_hash(base) != digest:
            return None
    except ModelFileError:
        return None
    return state, base


@dataclass(frozen=True)
class OpenProjectRequest:
    """Open ``path``: a GGUF, the first shard of a split GGUF, or a project folder."""

    path: Path


@dataclass(frozen=True)
class OpenProjectResult:
    folder: Path
    state: ProjectState
    model: ModelInfo  # the base float model
    source: ModelInfo  # what the user opened
    upcast: bool  # an F16 was made this time


@public_job("open project")
def open_project(
    request: OpenProjectRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> OpenProjectResult:
    """The project of ``request.path`` (made if new), with its float base model: hash
    (``Phase.HASH``, cached), and for a quantized source not seen before an F16 upcast
    (``Phase.UPCAST``) and the hash of that; one monotone progress over all."""
    check(cancel)
    path = Path(request.path)
    if path.is_dir():
        return _open_folder(path, progress, cancel)
    source = open_model(path)  # a bad file fails here, naming it
    if is_float_model(source):
        digest = model_hash(source, progress=progress, cancel=cancel)
        folder = project_path(digest)
        found = _existing_base(folder, digest)
        state, base = found if found is not None else (_rebased(folder, source, digest), source)
        return _finish(folder, state.with_source(source.path), base, source, False)
    phases = Phases(progress, [(Phase.HASH, 1), (Phase.UPCAST, 8), (Phase.WRITE, 3)])
    src_digest = model_hash(source, progress=phases.sink(Phase.HASH), cancel=cancel)
    known = _read_sources().get(src_digest)
    if known is not None:
        found = _existing_base(project_path(known), known)
        if found is not None:
            done = phases.sink(Phase.WRITE)
            done(Progress(Phase.HASH, 1, 1, "cached"))
            state, base = found
            return _finish(project_path(known), state.with_source(source.path), base, source, False)
    return _upcast_source(source, src_digest, phases, cancel)


def _rebased(folder: Path, base: ModelInfo, digest: str) -> ProjectState:
    """The project in ``folder`` (kept: imatrix, target, plans) now based on ``base``, or a
    new one where there is none."""
    if not (folder / PROJECT_FILE).is_file():
        return new_state(base, digest, base.path)
    old = load_state(folder)
    if old.tensor_data_sha256 != digest:
        raise InputError(
            f"{folder / PROJECT_FILE}: belongs to another model "
            f"({old.tensor_data_sha256}, this model {digest})"
        )
    return replace(old, base_model=base.path.resolve())


def _finish(
    folder: Path, state: ProjectState, base: ModelInfo, source: ModelInfo, made: bool
) -> OpenProjectResult:
    make_folder(folder)
    saved = save_state(folder, state)
    return OpenProjectResult(folder, saved, base, source, made)


def _open_folder(
    folder: Path, progress: ProgressSink, cancel: CancelToken | None
) -> OpenProjectResult:
    state = load_state(folder)
    if not state.base_model.is_file():
        raise InputError(
            f"{folder / PROJECT_FILE}: the project's model {state.base_model} is missing; "
            "open the model file instead"
        )
    base = open_model(state.base_model)
    digest = model_hash(base, progress=progress, cancel=cancel)
    if digest != state.tensor_data_sha256:
        raise InputError(
            f"{state.base_model}: its weights changed since the project in {folder} was made"
        )
    return OpenProjectResult(folder.resolve(), state, base, base, False)


def _upcast_source(
    source: ModelInfo, src_digest: str, phases: Phases, cancel: CancelToken | None
) -> OpenProjectResult:
    """Upcast into the projects folder, hash, then move into the project of that hash. The
    work file is removed on any failure or cancel; the project is written only at the end."""
    root = projects_dir()
    make_folder(root)
    work = root / f".upcast-{src_digest[:16]}-{os.getpid()}.gguf{TMP_SUFFIX}"
    try:
        upcast(
            UpcastRequest(source.path, work, "F16"),
            progress=phases.sink(Phase.UPCAST),
            cancel=cancel,
        )
        digest = model_hash(work, progress=phases.sink(Phase.WRITE), cancel=cancel)
        check(cancel)
        folder = project_path(digest)
        make_folder(folder)
        found = _existing_base(folder, digest)
        if found is not None:  # the same F16 was had before (the mapping was lost)
            state, base = found
        else:
            check_unlocked(folder)
            dest = folder / BASE_F16
            os.replace(work, dest)  # the commit point: no cancel after this
            record_model_hash(dest, digest)
            base = open_model(dest)
            state = _rebased(folder, base, digest)
        _record_source(src_digest, digest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            work.unlink()
    return _finish(folder, state.with_source(source.path), base, source, found is None)


# --- the imatrix ----------------------------------------------------------------------------


def attach_imatrix(folder: Path, state: ProjectState, path: Path, model: ModelInfo) -> ProjectState:
    """Adopt the imatrix ``path`` (GGUF or legacy ``.dat``) as the project's: it must be of
    ``model`` (every entry a tensor of it, rows and experts matching; else ``ImatrixError``
    naming the file and the tensor). Copied into the project as ``imatrix.gguf`` (atomic);
    the new state is saved and returned."""
    folder = Path(folder)
    im = read_imatrix(path)
    im.check_model(model, strict=True)
    dest = project_imatrix_path(folder)
    check_unlocked(folder)
    if Path(path).resolve() != dest.resolve():
        if im.is_legacy:
            write_imatrix(im, dest)  # GGUF, like every imatrix lwq writes
        else:
            with atomic_output(dest) as tmp:
                try:
                    shutil.copyfile(path, tmp)
                except OSError as e:
                    raise OutputError(f"{dest}: cannot copy {path} ({e.strerror})") from None
    dataset = "; ".join(im.datasets) or None
    return save_state(folder, replace(state, imatrix=dest, imatrix_dataset=dataset))
