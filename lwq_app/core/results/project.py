"""Per-model project folders: what lwq has measured about one base model, kept together.

A project lives under the user data folder (``platformdirs.user_data_dir("lwq")``, or
``$LWQ_DATA_DIR``) in ``projects/<tensor-data sha256[:16]>/``. It is keyed by the weights, not
the file name, so a moved, renamed or re-downloaded copy finds the same project and an edited
or re-quantized file gets its own. Inside:

    project.json                          model name, architecture, paths seen, hash, created
    calibration-<imatrix sha256[:12]>.json  KLD calibration of the proxy (``calibrate.py``);
                                          one per imatrix, because the proxy depends on it

The project is keyed by ``modelfile.model_hash`` (hashes cached in an index, so a model is
read once). (``store.py`` keeps its own hash in the per-variant results file beside the
model, so a results file stays self-contained.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..jobs.atomic import atomic_write_text
from ..jobs.errors import InputError, OutputError
from ..jobs.paths import data_dir
from ..modelfile.hashing import model_hash
from ..modelfile.inventory import ModelInfo, as_model_info

PROJECT_FILE = "project.json"
PROJECT_FORMAT = "lwq-project"


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
    info = as_model_info(model)
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
