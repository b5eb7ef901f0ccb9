"""Per-model project folders: what lwq has measured about one base model, kept together.

A project lives under the user data folder (``platformdirs.user_data_dir("lwq")``, or
``$LWQ_DATA_DIR``) in ``projects/<tensor-data sha256[:16]>/``. It is keyed by the weights, not
the file name, so a moved, renamed or re-downloaded copy finds the same project and an edited
or re-quantized file gets its own. Inside:

    project.json                          the project (``ProjectState``, versioned JSON)
    .lock                                 held while the app has it open (``project_lock``)
    base-f16.gguf                         the F16 upcast of a quantized source (``workspace``)
    imatrix.gguf                          the project's importance matrix
    calibration-<imatrix sha256[:12]>.json  KLD calibration of the proxy (``calibrate.py``);
                                          one per imatrix, because the proxy depends on it

``project.json`` version 2 holds the model (name, architecture, hash, the float
``base_model`` it is for), every path opened into it (``paths``), the imatrix, the hardware
target, the named plans (``plans``: name -> plan JSON, as ``QuantPlan.to_dict`` writes it),
the quantized variants made from them (``variants``), the one evaluation setting they are
measured under (``eval_settings``, ``eval_settings.py``) and created/modified stamps; version 1
(name, architecture, hash, paths, created) is migrated on reading. ``plans`` and
``variants`` are optional keys, so version 2 files written before them still load. Every write checks the lock first: while another
process has the project open, the CLI's writes are refused with ``ProjectLocked``.

The project is keyed by ``modelfile.model_hash`` (hashes cached in an index, so a model is
read once). (``store.py`` keeps its own hash in the per-variant results file beside the
model, so a results file stays self-contained.)
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..evaluate.hardware import TargetSpec
from ..jobs.atomic import atomic_write_text
from ..jobs.errors import InputError, OutputError, PlanError, shown
from ..jobs.paths import data_dir
from ..modelfile.hashing import model_hash
from ..modelfile.inventory import ModelInfo, as_model_info
from ..plan.quant_plan import QuantPlan, plan_from_dict
from .eval_settings import EvalSettings
from .project_lock import check_unlocked

PROJECT_FILE = "project.json"
PROJECT_FORMAT = "lwq-project"
PROJECT_VERSION = 2
#: longest plan name the project keeps (it is a label in menus and tabs)
MAX_PLAN_NAME = 80


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


def now_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _quoted(name: object) -> str:
    """A plan name quoted for a one-line message (control characters escaped)."""
    return f"'{shown(name, 80)}'"


def check_plan_name(name: object) -> str:
    """``name`` if it can name a plan: non-empty text of at most ``MAX_PLAN_NAME``
    characters without control characters or line breaks; ``InputError`` otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"plan name {_quoted(name)}: must be a non-empty text")
    if len(name) > MAX_PLAN_NAME:
        raise InputError(
            f"plan name {_quoted(name)}: {len(name)} characters, at most {MAX_PLAN_NAME}"
        )
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise InputError(f"plan name {_quoted(name)}: contains the control character {bad!r}")
    return name


@dataclass(frozen=True)
class Variant:
    """A quantized file made in the project: where it is, the named plan it came from (None:
    an unnamed plan), that plan's ``content_hash``, its size and when it was made (UTC)."""

    name: str
    path: Path
    plan_name: str | None
    plan_sha256: str
    file_bytes: int
    created: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "plan_name": self.plan_name,
            "plan_sha256": self.plan_sha256,
            "file_bytes": self.file_bytes,
            "created": self.created,
        }

    @staticmethod
    def from_json(d: object, where: str = "variant") -> Variant:
        """A variant from its ``project.json`` entry; ``InputError`` naming ``where`` and the
        field for anything malformed."""
        if not isinstance(d, dict):
            raise InputError(f"{where}: must be an object, not {shown(d, 40)}")
        for key in ("name", "path", "plan_sha256", "created"):
            if not isinstance(d.get(key), str):
                raise InputError(
                    f"{where}: field {key!r} must be a text, not {shown(d.get(key), 40)}"
                )
        plan_name = d.get("plan_name")
        if plan_name is not None and not isinstance(plan_name, str):
            raise InputError(f"{where}: field 'plan_name' must be a text or null")
        size = d.get("file_bytes")
        if type(size) is not int or size < 0:
            raise InputError(
                f"{where}: field 'file_bytes' must be a byte count, not {shown(size, 40)}"
            )
        if not d["path"]:
            raise InputError(f"{where}: field 'path' is empty")
        return Variant(d["name"], Path(d["path"]), plan_name, d["plan_sha256"], size, d["created"])


def _same_path(a: Path, b: Path) -> bool:
    return a == b or Path(a).resolve() == Path(b).resolve()


@dataclass(frozen=True)
class ProjectState:
    """A project as ``project.json`` (version 2) holds it. ``base_model``: the float model
    the project is for; ``sources``: every path opened into it, quantized sources included;
    ``imatrix``: a file inside the project folder; ``plans``: the named plans (name -> plan
    JSON; ``project_plans`` validates them against the model); ``variants``: the quantized
    files made in the project."""

    version: int
    name: str
    architecture: str
    tensor_data_sha256: str
    base_model: Path
    sources: tuple[Path, ...] = ()
    imatrix: Path | None = None
    imatrix_dataset: str | None = None
    target: TargetSpec | None = None
    plans: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    created: str = ""
    modified: str = ""
    variants: tuple[Variant, ...] = ()
    #: how variants are measured (None: not chosen yet; the app proposes a default)
    eval_settings: EvalSettings | None = None

    def with_source(self, path: Path) -> ProjectState:
        """The state with ``path`` (resolved) among the sources, once."""
        p = Path(path).resolve()
        return self if p in self.sources else replace(self, sources=(*self.sources, p))

    # --- named plans ------------------------------------------------------------------
    def with_plan(self, name: str, plan: QuantPlan) -> ProjectState:
        """The state with ``plan`` saved as ``name`` (replacing a plan of that name in place)."""
        if not isinstance(plan, QuantPlan):
            raise InputError(f"plan {_quoted(name)}: not a QuantPlan ({type(plan).__name__})")
        plans = dict(self.plans)
        plans[check_plan_name(name)] = plan.to_dict()
        return replace(self, plans=MappingProxyType(plans))

    def without_plan(self, name: str) -> ProjectState:
        """The state without the plan ``name``; ``InputError`` if there is none."""
        if name not in self.plans:
            raise InputError(f"project {self.name!r} has no plan {_quoted(name)}")
        return replace(
            self, plans=MappingProxyType({k: v for k, v in self.plans.items() if k != name})
        )

    def renamed_plan(self, old: str, new: str) -> ProjectState:
        """The state with plan ``old`` called ``new`` (same place in the order); the variants
        made from it follow. ``InputError`` if ``old`` is missing or ``new`` taken."""
        if old not in self.plans:
            raise InputError(f"project {self.name!r} has no plan {_quoted(old)}")
        check_plan_name(new)
        if new == old:
            return self
        if new in self.plans:
            raise InputError(f"project {self.name!r} already has a plan {_quoted(new)}")
        plans = {(new if k == old else k): v for k, v in self.plans.items()}
        variants = tuple(
            replace(v, plan_name=new) if v.plan_name == old else v for v in self.variants
        )
        return replace(self, plans=MappingProxyType(plans), variants=variants)

    # --- variants ---------------------------------------------------------------------
    def with_variant(self, variant: Variant) -> ProjectState:
        """The state with ``variant`` recorded, replacing (in place) one of the same path."""
        if not isinstance(variant, Variant):
            raise InputError(f"not a Variant ({type(variant).__name__})")
        out = list(self.variants)
        i = next((i for i, v in enumerate(out) if _same_path(v.path, variant.path)), None)
        if i is None:
            out.append(variant)
        else:
            out[i] = variant
        return replace(self, variants=tuple(out))

    def without_variant(self, path: Path) -> ProjectState:
        """The state without the variant at ``path`` (unchanged if there is none)."""
        return replace(
            self, variants=tuple(v for v in self.variants if not _same_path(v.path, Path(path)))
        )

    def to_json(self, folder: Path) -> dict[str, Any]:
        imx = None
        if self.imatrix is not None:
            if Path(self.imatrix).parent.resolve() != Path(folder).resolve():
                raise OutputError(f"{self.imatrix}: the project's imatrix must be in {folder}")
            imx = Path(self.imatrix).name
        return {
            "format": PROJECT_FORMAT,
            "version": PROJECT_VERSION,
            "name": self.name,
            "architecture": self.architecture,
            "tensor_data_sha256": self.tensor_data_sha256,
            "base_model": str(self.base_model),
            "paths": [str(p) for p in self.sources],
            "imatrix": imx,
            "imatrix_dataset": self.imatrix_dataset,
            "target": None if self.target is None else self.target.to_json(),
            "plans": dict(self.plans),
            "variants": [v.to_json() for v in self.variants],
            "eval_settings": None if self.eval_settings is None else self.eval_settings.to_json(),
            "created": self.created,
            "modified": self.modified,
        }


def _text(d: Mapping[str, Any], key: str, where: Path, *, optional: bool = False) -> Any:
    v = d.get(key)
    if (v is None and optional) or isinstance(v, str):
        return v
    raise InputError(f"{where}: field {key!r} must be a text, not {shown(v, 40)}")


def _state_from_json(d: dict[str, Any], folder: Path, p: Path) -> ProjectState:
    version = d.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{p}: bad project version {shown(version, 40)}")
    if version > PROJECT_VERSION:
        raise InputError(
            f"{p}: project version {version} is newer than this lwq reads "
            f"({PROJECT_VERSION}); update lwq to open it"
        )
    paths = d.get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(x, str) for x in paths):
        raise InputError(f"{p}: field 'paths' must be a list of texts")
    sources = tuple(Path(x) for x in paths)
    digest = _text(d, "tensor_data_sha256", p)
    common = {
        "name": _text(d, "name", p),
        "architecture": _text(d, "architecture", p),
        "tensor_data_sha256": digest,
        "sources": sources,
        "created": _text(d, "created", p, optional=True) or "",
    }
    if version == 1:  # the base model: the first recorded path that still exists
        if not sources:
            raise InputError(f"{p}: the project records no model path")
        base = next((s for s in sources if s.is_file()), sources[0])
        return ProjectState(PROJECT_VERSION, base_model=base, modified=common["created"], **common)
    imx = _text(d, "imatrix", p, optional=True)
    if imx is not None and (not imx or Path(imx).name != imx or imx in (".", "..")):
        raise InputError(f"{p}: field 'imatrix' must name a file in the project folder")
    target = d.get("target")
    plans = d.get("plans", {})
    if plans is None:
        plans = {}
    if not isinstance(plans, dict):
        raise InputError(f"{p}: field 'plans' must be an object")
    for key, value in plans.items():
        try:
            check_plan_name(key)
        except InputError as e:
            raise InputError(f"{p}: field 'plans': {e}") from None
        if not isinstance(value, dict):
            raise InputError(
                f"{p}: field 'plans': plan {_quoted(key)} must be an object (a plan JSON), "
                f"not {shown(value, 40)}"
            )
    raw_variants = d.get("variants", [])
    if raw_variants is None:
        raw_variants = []
    if not isinstance(raw_variants, list):
        raise InputError(f"{p}: field 'variants' must be a list")
    variants = tuple(
        Variant.from_json(v, f"{p}: field 'variants' item {i + 1}")
        for i, v in enumerate(raw_variants)
    )
    settings = d.get("eval_settings")
    return ProjectState(
        PROJECT_VERSION,
        base_model=Path(_text(d, "base_model", p)),
        eval_settings=None
        if settings is None
        else EvalSettings.from_json(settings, f"{p}: field 'eval_settings'"),
        imatrix=None if imx is None else folder / imx,
        imatrix_dataset=_text(d, "imatrix_dataset", p, optional=True),
        target=None if target is None else TargetSpec.from_json(target, str(p)),
        plans=MappingProxyType(dict(plans)),
        variants=variants,
        modified=_text(d, "modified", p, optional=True) or "",
        **common,
    )


def project_plans(state: ProjectState, model: ModelInfo) -> dict[str, QuantPlan]:
    """The project's named plans, each checked against ``model`` (``plan_from_dict``);
    ``PlanError`` naming the project and the plan for one that is damaged or for another
    model."""
    return {name: project_plan(state, model, name) for name in state.plans}


def project_plan(state: ProjectState, model: ModelInfo, name: str) -> QuantPlan:
    """The project's plan ``name`` (``KeyError`` if there is none), checked as
    ``project_plans`` checks each."""
    data = state.plans[name]
    try:
        return plan_from_dict(model, data, source=f"plan {_quoted(name)}")
    except PlanError as e:
        raise PlanError(f"project {state.name!r}: {e}") from None


def load_state(folder: Path) -> ProjectState:
    """The project in ``folder`` (version 1 migrated); ``InputError`` naming the file for
    a missing, malformed or newer-than-known ``project.json``."""
    folder = Path(folder)
    p = folder / PROJECT_FILE
    if not p.is_file():
        raise InputError(f"{folder}: not an lwq project folder (no {PROJECT_FILE})")
    d = read_project(folder)
    return _state_from_json(d, folder, p)


def save_state(folder: Path, state: ProjectState) -> ProjectState:
    """Write ``project.json`` atomically with ``modified`` set to now; the saved state.
    Refused with ``ProjectLocked`` while another process has the project open."""
    folder = Path(folder)
    check_unlocked(folder)
    stamp = now_stamp()
    saved = replace(state, version=PROJECT_VERSION, modified=stamp, created=state.created or stamp)
    text = json.dumps(saved.to_json(folder), indent=1) + "\n"
    atomic_write_text(folder / PROJECT_FILE, text)
    return saved


def new_state(info: ModelInfo, digest: str, base_model: Path) -> ProjectState:
    """A fresh project for ``info`` (hash ``digest``) whose float model is ``base_model``."""
    return ProjectState(
        PROJECT_VERSION, info.name, info.architecture, digest, Path(base_model).resolve()
    )


def make_folder(folder: Path) -> None:
    """Create a project folder (or the projects folder) if need be; ``OutputError`` if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{folder}: cannot create the project folder ({e.strerror})") from None


def ensure_project(model: str | Path | ModelInfo) -> Path:
    """Create the model's project folder if needed and record this path in ``project.json``
    (``ProjectLocked`` while another process has the project open)."""
    info = as_model_info(model)
    digest = model_hash(info)
    folder = project_path(digest)
    make_folder(folder)
    meta = read_project(folder)
    if meta and meta.get("tensor_data_sha256") != digest:
        raise InputError(
            f"{folder / PROJECT_FILE}: belongs to another model "
            f"({shown(meta.get('tensor_data_sha256'), 80)}, this model {digest})"
        )
    here = info.path.resolve()
    state = load_state(folder) if meta else new_state(info, digest, here)
    if meta and here in state.sources:
        return folder
    save_state(folder, state.with_source(here))
    return folder
