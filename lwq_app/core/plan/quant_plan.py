"""Quantization plans: one requested type per tensor, and what llama.cpp will really write.

A ``QuantPlan`` is immutable. Each ``TensorPlan`` keeps the *requested* type and the
*effective* type after llama.cpp's shape fallback, so a user always sees both. Sizes are exact:
``size_bytes`` equals the written file's tensor-data bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..jobs.boundary import public_job
from ..jobs.errors import InputError, PlanError, shown
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress
from ..modelfile.hashing import sha256_text
from ..modelfile.imatrix_file import read_imatrix
from ..modelfile.inventory import ModelInfo, TensorInfo, open_model, tensor_layer
from ..modelfile.type_catalog import TYPES, effective_type, get_type, tensor_bytes
from .stock_mixes import (
    QUANT_PRESETS,
    check_preset,
    get_preset,
    resolve_preset,
    tensor_requires_imatrix,
)

PLAN_FORMAT = "lwq-plan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class TensorPlan:
    """The plan for one tensor."""

    name: str
    shape: tuple[int, ...]
    source_type: str
    requested: str
    effective: str
    quantizable: bool

    @property
    def fallback(self) -> bool:
        return self.requested != self.effective

    @property
    def size_bytes(self) -> int:
        return tensor_bytes(self.effective, self.shape)

    @property
    def n_params(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class PlanWarning:
    tensor: str
    message: str


@dataclass(frozen=True)
class Fallback:
    """A tensor whose requested type llama.cpp replaces (rows not divisible by its block)."""

    tensor: str
    requested: str
    effective: str

    def to_json(self) -> dict[str, str]:
        return {"tensor": self.tensor, "requested": self.requested, "effective": self.effective}


@dataclass(frozen=True)
class LayerSummary:
    """One layer of a plan (``layer`` None: the non-layer tensors)."""

    layer: int | None
    params: int
    bytes: int
    bpw: float
    types: tuple[tuple[str, int], ...]  # (effective type, tensors), in first-seen order
    fallbacks: int

    def to_json(self) -> dict[str, Any]:
        """The row as ``lwq plan --json`` prints it under ``layers``."""
        return {
            "layer": self.layer,
            "params": self.params,
            "bytes": self.bytes,
            "types": dict(self.types),
            "fallbacks": self.fallbacks,
            "bpw": self.bpw,
        }


@dataclass(frozen=True)
class QuantPlan:
    """Per-tensor quantization plan for one model."""

    architecture: str
    n_layer: int
    model_fingerprint: str
    tensors: tuple[TensorPlan, ...]
    preset: str | None = None
    with_imatrix: bool = False
    note: str = ""
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({t.name: i for i, t in enumerate(self.tensors)})

    # --- queries -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> TensorPlan:
        try:
            return self.tensors[self._index[name]]
        except KeyError:
            raise PlanError(f"plan has no tensor {name!r}") from None

    @property
    def size_bytes(self) -> int:
        """Exact tensor-data bytes of the quantized file (padding excluded)."""
        return sum(t.size_bytes for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.n_params for t in self.tensors)

    @property
    def bpw(self) -> float:
        """Bits per weight over all tensors, as llama-quantize reports it."""
        return self.size_bytes * 8 / max(1, self.n_params)

    def effective_types(self) -> dict[str, str]:
        return {t.name: t.effective for t in self.tensors}

    def requested_types(self) -> dict[str, str]:
        return {t.name: t.requested for t in self.tensors}

    def quantized_tensors(self) -> list[TensorPlan]:
        return [t for t in self.tensors if t.quantizable]

    def warnings(self) -> list[PlanWarning]:
        """Requested types llama.cpp cannot use for a tensor's shape, with what it uses instead."""
        out = []
        for t in self.tensors:
            if t.fallback:
                out.append(
                    PlanWarning(
                        t.name,
                        f"{t.name}: {t.requested} needs rows divisible by "
                        f"{TYPES[t.requested].block_size}, ne0={t.shape[0]}; "
                        f"llama.cpp writes {t.effective}",
                    )
                )
        return out

    def needs_imatrix(self, ftype: str | None = None) -> list[str]:
        """Tensors whose effective type cannot be written without an importance matrix."""
        ftype = ftype if ftype is not None else self.preset
        return [
            t.name
            for t in self.tensors
            if t.quantizable
            and t.effective != t.source_type
            and tensor_requires_imatrix(t.name, t.effective, ftype)
        ]

    def fallbacks(self) -> tuple[Fallback, ...]:
        """Tensors whose requested type llama.cpp replaces for their shape."""
        return tuple(Fallback(t.name, t.requested, t.effective) for t in self.tensors if t.fallback)

    def layer_summary(self) -> tuple[LayerSummary, ...]:
        """Per layer (``None`` = non-layer tensors): params, bytes, bpw and a type histogram."""
        rows: dict[int | None, list[Any]] = {}  # layer -> [params, bytes, {type: n}, fallbacks]
        for t in self.tensors:
            r = rows.setdefault(tensor_layer(t.name), [0, 0, {}, 0])
            r[0] += t.n_params
            r[1] += t.size_bytes
            r[2][t.effective] = r[2].get(t.effective, 0) + 1
            r[3] += int(t.fallback)
        return tuple(
            LayerSummary(
                layer=layer,
                params=params,
                bytes=n_bytes,
                bpw=n_bytes * 8 / max(1, params),
                types=tuple(types.items()),
                fallbacks=fallbacks,
            )
            for layer, (params, n_bytes, types, fallbacks) in sorted(
                rows.items(), key=lambda kv: -1 if kv[0] is None else kv[0]
            )
        )

    def dominant_type(self) -> str:
        """The quantized type holding most parameters (used to pick a base ftype)."""
        weight: dict[str, int] = {}
        for t in self.quantized_tensors():
            weight[t.effective] = weight.get(t.effective, 0) + t.n_params
        return max(weight, key=lambda k: weight[k]) if weight else "F16"

    # --- edits ----------------------------------------------------------------------------
    def with_types(self, changes: Mapping[str, str], strict: bool = False) -> QuantPlan:
        """A new plan with some tensors' requested types changed (validated)."""
        tensors = list(self.tensors)
        for name, type_name in changes.items():
            if name not in self._index:
                raise PlanError(f"plan has no tensor {name!r}")
            i = self._index[name]
            tensors[i] = _retype(tensors[i], type_name, strict)
        return replace(self, tensors=tuple(tensors), preset=None, _index={})

    # --- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "model": {
                "architecture": self.architecture,
                "n_layer": self.n_layer,
                "fingerprint": self.model_fingerprint,
                "n_tensors": len(self.tensors),
            },
            "preset": self.preset,
            "with_imatrix": self.with_imatrix,
            "note": self.note,
            "size_bytes": self.size_bytes,
            "bpw": round(self.bpw, 4),
            "tensors": {t.name: t.requested for t in self.tensors},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def content_hash(self) -> str:
        """SHA-256 of the plan's model fingerprint and per-tensor requested types."""
        body = json.dumps(
            {"model": self.model_fingerprint, "tensors": self.requested_types()},
            sort_keys=True,
        )
        return sha256_text(body)

    def save(self, path: str | Path) -> None:
        from ..jobs.atomic import atomic_write_text

        atomic_write_text(Path(path), self.to_json())


def _retype(t: TensorPlan, type_name: str, strict: bool) -> TensorPlan:
    try:
        qt = get_type(type_name)
    except KeyError as e:
        raise PlanError(f"tensor {t.name}: {e.args[0]}") from None
    if not t.quantizable:
        if qt.name != t.source_type:
            raise PlanError(
                f"tensor {t.name} is never quantized by llama.cpp (norms, 1-D tensors, routers); "
                f"it stays {t.source_type}, cannot be {qt.name}"
            )
        return t
    eff = effective_type(qt.name, t.shape[0])
    if strict and eff != qt.name:
        raise PlanError(
            f"tensor {t.name}: {qt.name} needs rows divisible by {qt.block_size} "
            f"(ne0={t.shape[0]}); llama.cpp would write {eff} (--strict)"
        )
    return replace(t, requested=qt.name, effective=eff)


def _tensor_plan(t: TensorInfo, requested: str) -> TensorPlan:
    eff = effective_type(requested, t.ne0) if t.quantizable else t.type
    return TensorPlan(
        t.name, t.shape, t.type, requested if t.quantizable else t.type, eff, t.quantizable
    )


def plan_from_preset(model: ModelInfo, preset: str, with_imatrix: bool = False) -> QuantPlan:
    """The exact per-tensor types llama.cpp's stock mix ``preset`` would write."""
    p = get_preset(preset)
    requested = resolve_preset(model, p.name, with_imatrix)
    tensors = tuple(_tensor_plan(t, requested[t.name]) for t in model.tensors)
    return QuantPlan(
        architecture=model.architecture,
        n_layer=model.n_layer,
        model_fingerprint=model.fingerprint(),
        tensors=tensors,
        preset=p.name,
        with_imatrix=with_imatrix,
    )


def writable_presets(model: ModelInfo, with_imatrix: bool) -> dict[str, QuantPlan]:
    """Every stock mix that can be written with these inputs, by name, in ``QUANT_PRESETS``
    order: with an imatrix every quantized preset, without one those that need none."""
    out = {}
    for name in QUANT_PRESETS:
        ref = plan_from_preset(model, name, with_imatrix)
        if with_imatrix or not ref.needs_imatrix():
            out[name] = ref
    return out


def plan_from_types(
    model: ModelInfo,
    types: Mapping[str, str],
    *,
    strict: bool = False,
    source: str = "plan",
    preset: str | None = None,
    with_imatrix: bool = False,
) -> QuantPlan:
    """Build a plan from a full ``tensor -> type`` map, validating it against ``model``."""
    names = set(model.by_name)
    unknown = sorted(set(types) - names)
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        listed = ", ".join(shown(n, 80) for n in unknown[:5])
        raise PlanError(f"{source}: names tensor(s) not in {model.path.name}: {listed}{more}")
    missing = sorted(t.name for t in model.tensors if t.quantizable and t.name not in types)
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise PlanError(f"{source}: has no type for tensor(s): {', '.join(missing[:5])}{more}")
    tensors = []
    for t in model.tensors:
        base = _tensor_plan(t, t.type)
        want = types.get(t.name, t.type)
        try:
            tensors.append(_retype(base, want, strict))
        except PlanError as e:
            raise PlanError(f"{source}: {e}") from None
    return QuantPlan(
        architecture=model.architecture,
        n_layer=model.n_layer,
        model_fingerprint=model.fingerprint(),
        tensors=tuple(tensors),
        preset=preset,
        with_imatrix=with_imatrix,
    )


def plan_from_dict(
    model: ModelInfo, data: Any, *, strict: bool = False, source: str = "plan"
) -> QuantPlan:
    """A plan from its parsed JSON, every field's type checked: ``PlanError`` naming
    ``source`` (and the field or tensor) for anything else, and for another model's plan."""
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise PlanError(f'{source}: not an lwq plan (missing "format": "{PLAN_FORMAT}")')
    version = data.get("version")
    if type(version) is not int or version != PLAN_VERSION:
        raise PlanError(f"{source}: plan version {shown(version, 60)} is not supported")
    types = data.get("tensors")
    if not isinstance(types, dict):
        raise PlanError(f'{source}: "tensors" must map tensor names to type names')
    for k, v in types.items():
        if not isinstance(v, str):
            raise PlanError(
                f'{source}: "tensors": tensor {shown(k, 80)}: the type must be a string, '
                f"not {shown(v, 60)}"
            )
    m = data.get("model", {})
    if m is None:
        m = {}
    if not isinstance(m, dict):
        raise PlanError(f'{source}: "model" must be an object, not {shown(m, 60)}')
    for key in ("architecture", "fingerprint"):
        if m.get(key) is not None and not isinstance(m.get(key), str):
            raise PlanError(f'{source}: "model.{key}" must be a string, not {shown(m[key], 60)}')
    if m.get("architecture") not in (None, model.architecture):
        raise PlanError(
            f"{source}: plan is for architecture '{shown(m.get('architecture'), 60)}', "
            f"{model.path.name} is {model.architecture!r}"
        )
    preset = data.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise PlanError(f'{source}: "preset" must be a string or null, not {shown(preset, 60)}')
    with_imatrix = data.get("with_imatrix", False)
    if with_imatrix is not None and not isinstance(with_imatrix, bool):
        raise PlanError(
            f'{source}: "with_imatrix" must be true or false, not {shown(with_imatrix, 60)}'
        )
    note = data.get("note", "")
    if note is not None and not isinstance(note, str):
        raise PlanError(f'{source}: "note" must be a string, not {shown(note, 60)}')
    # a plan that still equals its preset keeps the name; any edit drops it on load
    plan = plan_from_types(
        model, types, strict=strict, source=source, with_imatrix=bool(with_imatrix)
    )
    fingerprint = m.get("fingerprint")
    if fingerprint is not None and fingerprint != plan.model_fingerprint:
        raise PlanError(
            f"{source}: plan is for another model (fingerprint {shown(fingerprint, 40)}; "
            f"{model.path.name} is {plan.model_fingerprint}: same tensor names, other shapes)"
        )
    if isinstance(preset, str):
        try:
            ref = plan_from_preset(model, preset, plan.with_imatrix)
        except KeyError:
            ref = None
        if ref is not None and ref.requested_types() == plan.requested_types():
            plan = replace(plan, preset=get_preset(preset).name, _index={})
    return replace(plan, note=note or "", _index={})


#: a plan JSON is a few hundred kB at most; anything far larger is not a plan
MAX_PLAN_BYTES = 64 << 20
_LONG_NUMBER = re.compile(r"\d{4000,}")


def read_small_text(path: Path, limit: int, what: str, not_what: str) -> str:
    """The UTF-8 text of a small input file (a plan, a recipe); ``PlanError`` naming it when
    it is missing, over ``limit`` bytes, not UTF-8 or unreadable. ``what`` names the kind of
    file (``"plan file"``), ``not_what`` what a wrong one is not (``"an lwq plan"``)."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise PlanError(f"{path}: {size} bytes is too large for a {what}")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as e:
        raise PlanError(f"{path}: not UTF-8 text at byte {e.start}; not {not_what}") from None
    except OSError as e:
        raise PlanError(f"{path}: cannot read {what}: {e.strerror or e}") from None


def load_plan(path: str | Path, model: ModelInfo, *, strict: bool = False) -> QuantPlan:
    """Read a plan JSON; errors name the file (and the line for JSON syntax errors)."""
    p = Path(path)
    text = read_small_text(p, MAX_PLAN_BYTES, "plan file", "an lwq plan")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanError(f"{p}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise PlanError(f"{p}: invalid plan: JSON nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits
        long = _LONG_NUMBER.search(text)
        where = f":{text.count(chr(10), 0, long.start()) + 1}" if long else ""
        what = "a number with too many digits" if long else shown(str(e), 120)
        raise PlanError(f"{p}{where}: invalid plan: {what}") from None
    return plan_from_dict(model, data, strict=strict, source=str(p))


# --- the plan job -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRequest:
    """A plan for ``model`` from a stock mix (``preset``) or a saved plan (``plan_file``),
    with ``changes`` (tensor, type) applied in order. ``strict``: a requested type that does
    not fit a tensor's shape is an error. ``imatrix``: the importance matrix the plan will be
    quantized with (a preset then resolves as llama.cpp does with one; checked against the
    model)."""

    model: Path
    preset: str | None = None
    plan_file: Path | None = None
    changes: tuple[tuple[str, str], ...] = ()
    strict: bool = False
    imatrix: Path | None = None


@dataclass(frozen=True)
class PlanResult:
    plan: QuantPlan
    layers: tuple[LayerSummary, ...]
    fallbacks: tuple[Fallback, ...]
    warnings: tuple[PlanWarning, ...]

    def to_json(self) -> dict[str, Any]:
        """What ``lwq plan --json`` prints: the plan file's keys, ``layers`` and ``fallbacks``."""
        d = self.plan.to_dict()
        d["layers"] = [r.to_json() for r in self.layers]
        d["fallbacks"] = [f.to_json() for f in self.fallbacks]
        return d


@public_job("plan")
def make_plan(
    request: PlanRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> PlanResult:
    """Build the plan ``request`` describes (instant: header reads and arithmetic)."""
    check(cancel)
    if (request.preset is None) == (request.plan_file is None):
        raise InputError("a plan comes from exactly one of a preset or a plan file")
    if request.preset is not None:
        check_preset(request.preset, "--preset", PlanError)
    for change in request.changes:
        if not (isinstance(change, tuple) and len(change) == 2 and all(
                isinstance(x, str) for x in change)):  # fmt: skip
            raise InputError(f"--set {shown(change, 80)}: expected (tensor, type) names")
    model = open_model(request.model)
    if request.preset is not None:
        plan = plan_from_preset(model, request.preset, with_imatrix=request.imatrix is not None)
    else:
        assert request.plan_file is not None
        plan = load_plan(request.plan_file, model, strict=request.strict)
    if request.strict and plan.warnings():
        raise PlanError(plan.warnings()[0].message + " (--strict)")
    if request.changes:
        plan = plan.with_types(dict(request.changes), strict=request.strict)
    if request.imatrix is not None:
        read_imatrix(request.imatrix).check_model(model, plan.needs_imatrix())
    return PlanResult(plan, plan.layer_summary(), plan.fallbacks(), tuple(plan.warnings()))
