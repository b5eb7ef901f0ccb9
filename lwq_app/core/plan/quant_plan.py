"""Quantization plans: one requested type per tensor, and what llama.cpp will really write.

A ``QuantPlan`` is immutable. Each ``TensorPlan`` keeps the *requested* type and the
*effective* type after llama.cpp's shape fallback, so a user always sees both. Sizes are exact:
``size_bytes`` equals the written file's tensor-data bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..jobs.errors import InputError, PlanError
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress
from ..modelfile.hashing import sha256_text
from ..modelfile.imatrix_file import read_imatrix
from ..modelfile.inventory import ModelInfo, TensorInfo, open_model, tensor_layer
from ..modelfile.type_catalog import TYPES, effective_type, get_type, tensor_bytes
from .stock_mixes import get_preset, resolve_preset, tensor_requires_imatrix

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
        raise PlanError(
            f"{source}: names tensor(s) not in {model.path.name}: {', '.join(unknown[:5])}{more}"
        )
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
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise PlanError(f'{source}: not an lwq plan (missing "format": "{PLAN_FORMAT}")')
    if data.get("version") != PLAN_VERSION:
        raise PlanError(f"{source}: plan version {data.get('version')!r} is not supported")
    types = data.get("tensors")
    if not isinstance(types, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in types.items()
    ):
        raise PlanError(f'{source}: "tensors" must map tensor names to type names')
    m = data.get("model", {})
    if isinstance(m, dict) and m.get("architecture") not in (None, model.architecture):
        raise PlanError(
            f"{source}: plan is for architecture {m.get('architecture')!r}, "
            f"{model.path.name} is {model.architecture!r}"
        )
    preset = data.get("preset")
    # a plan that still equals its preset keeps the name; any edit drops it on load
    plan = plan_from_types(
        model, types, strict=strict, source=source, with_imatrix=bool(data.get("with_imatrix"))
    )
    if isinstance(preset, str):
        try:
            ref = plan_from_preset(model, preset, plan.with_imatrix)
        except KeyError:
            ref = None
        if ref is not None and ref.requested_types() == plan.requested_types():
            plan = replace(plan, preset=get_preset(preset).name, _index={})
    return replace(plan, note=str(data.get("note", "")), _index={})


def load_plan(path: str | Path, model: ModelInfo, *, strict: bool = False) -> QuantPlan:
    """Read a plan JSON; errors name the file (and the line for JSON syntax errors)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{p}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PlanError(f"{p}: cannot read plan: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanError(f"{p}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
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
    model = open_model(request.model)
    if request.preset is not None:
        try:
            plan = plan_from_preset(model, request.preset, with_imatrix=request.imatrix is not None)
        except KeyError as e:
            raise PlanError(str(e.args[0])) from None
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
