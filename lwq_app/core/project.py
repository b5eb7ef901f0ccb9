"""Per-model project folders: what lwq has measured about one base model, kept together.

A project lives under the user data folder (``platformdirs.user_data_dir("lwq")``, or
``$LWQ_DATA_DIR``) in ``projects/<tensor-data sha256[:16]>/``. It is keyed by the weights, not
the file name, so a moved, renamed or re-downloaded copy finds the same project and an edited
or re-quantized file gets its own. Inside:

    project.json                          model name, architecture, paths seen, hash, created
    calibration-<imatrix sha256[:12]>.json  KLD calibration of the proxy (``calibrate.py``);
                                          one per imatrix, because the proxy depends on it

Hashing a model reads all of it (minutes for a large one), so ``model_hash`` keeps the
hashes in ``model-hashes.json`` in the data folder, keyed by the resolved path and valid
while every shard keeps its size and mtime. That index is only a cache: unreadable, it is
rebuilt; unwritable, hashes are simply computed again. (``results.py`` keeps its own hash in
the per-variant results file beside the model, so a results file stays self-contained.)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from .errors import InputError, LwqError, OutputError
from .fileio import atomic_write_text
from .model import ModelInfo, open_model

DATA_DIR_ENV = "LWQ_DATA_DIR"
HASH_INDEX = "model-hashes.json"
PROJECT_FILE = "project.json"
PROJECT_FORMAT = "lwq-project"
INDEX_FORMAT = "lwq-model-hashes"
#: entries kept in the hash index (oldest dropped first)
MAX_INDEX_ENTRIES = 500


def data_dir() -> Path:
    """lwq's user data folder: ``$LWQ_DATA_DIR`` if set, else platformdirs' user data dir."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("lwq"))


def _info(model: str | Path | ModelInfo) -> ModelInfo:
    return model if isinstance(model, ModelInfo) else open_model(model)


def _stamp(info: ModelInfo) -> list[list[Any]]:
    """(path, size, mtime_ns) of every shard: any change invalidates the cached hash."""
    out: list[list[Any]] = []
    for p in info.paths:
        st = p.stat()
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _read_index() -> dict[str, Any]:
    try:
        d = json.loads((data_dir() / HASH_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(d, dict) or d.get("format") != INDEX_FORMAT:
        return {}
    models = d.get("models")
    return models if isinstance(models, dict) else {}


def _write_index(models: dict[str, Any]) -> None:
    """Best effort: drop entries whose file is gone, keep the newest ``MAX_INDEX_ENTRIES``."""
    kept = {k: v for k, v in models.items() if Path(k).exists()}
    kept = dict(list(kept.items())[-MAX_INDEX_ENTRIES:])
    text = json.dumps({"format": INDEX_FORMAT, "models": kept}, indent=1) + "\n"
    with contextlib.suppress(OSError, LwqError):
        data_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_text(data_dir() / HASH_INDEX, text)


def model_hash(model: str | Path | ModelInfo) -> str:
    """The model's tensor-data SHA-256, from the index while no shard changed size or mtime."""
    info = _info(model)
    stamp = _stamp(info)  # taken before hashing: a file written meanwhile is hashed again later
    key = stamp[0][0]
    models = _read_index()
    entry = models.get(key)
    if isinstance(entry, dict) and entry.get("files") == stamp and entry.get("sha256"):
        return str(entry["sha256"])
    digest = info.tensor_data_hash()
    models.pop(key, None)  # re-inserted last: the newest entry survives pruning
    models[key] = {"files": stamp, "sha256": digest}
    _write_index(models)
    return digest


def project_path(digest: str) -> Path:
    """The project folder of the model whose tensor-data SHA-256 is ``digest``."""
    return data_dir() / "projects" / digest[:16]


def project_dir(model: str | Path | ModelInfo) -> Path:
    """The model's project folder (it may not exist yet; ``ensure_project`` makes it)."""
    return project_path(model_hash(model))


def calibration_name(imatrix_hash: str) -> str:
    return f"calibration-{imatrix_hash[:12]}.json"


def calibration_path(model_digest: str, imatrix_hash: str) -> Path:
    """Where the project keeps the calibration for this model and imatrix file."""
    return project_path(model_digest) / calibration_name(imatrix_hash)


def find_calibration(model_digest: str, imatrix_hash: str) -> Path | None:
    """The project's calibration for (model, imatrix), or None if none was measured."""
    p = calibration_path(model_digest, imatrix_hash)
    return p if p.is_file() else None


def read_project(folder: Path) -> dict[str, Any]:
    """The folder's ``project.json`` ({} if there is none yet)."""
    p = folder / PROJECT_FILE
    if not p.exists():
        return {}
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: unreadable project file ({e})") from None
    if not isinstance(d, dict) or d.get("format") != PROJECT_FORMAT:
        raise InputError(f"{p}: not an lwq project file")
    return d


def ensure_project(model: str | Path | ModelInfo) -> Path:
    """Create the model's project folder if needed and record this path in ``project.json``."""
    info = _info(model)
    digest = model_hash(info)
    folder = project_path(digest)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{folder}: cannot create the project folder ({e.strerror})") from None
    meta = read_project(folder)
    if meta and meta.get("tensor_data_sha256") != digest:
        raise InputError(
            f"{folder / PROJECT_FILE}: belongs to another model "
            f"({meta.get('tensor_data_sha256')}, this model {digest})"
        )
    here = str(info.path.resolve())
    seen = [str(p) for p in meta.get("paths", [])]
    if meta and here in seen:
        return folder
    meta = {
        "format": PROJECT_FORMAT,
        "version": 1,
        "name": meta.get("name") or info.name,
        "architecture": info.architecture,
        "tensor_data_sha256": digest,
        "paths": [*seen, here],
        "created": meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(folder / PROJECT_FILE, json.dumps(meta, indent=1) + "\n")
    return folder
