"""Read a quantized GGUF back as a plan for its float base model, so it can be edited.

Only the header is read. The requested type of each tensor is the type in the file, with one
exception: a file lwq quantized carries its plan in the sidecar (``quantize.sidecar_path``);
when that plan still describes the file (same effective types, and the plan hash recorded in
the GGUF if there is one) its requested types are used, so the read-back plan is the plan
that made the file, fallbacks included.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..jobs.errors import InputError, PlanError, shown
from ..modelfile.inventory import ModelInfo, open_model
from ..modelfile.type_catalog import effective_type
from .quant_plan import MAX_PLAN_BYTES, QuantPlan, plan_from_dict, plan_from_preset, plan_from_types
from .quantize import KV_IMATRIX_ENTRIES, KV_IMATRIX_FILE, KV_PLAN_HASH, sidecar_path
from .stock_mixes import PRESETS, PRESETS_BY_FTYPE


def plan_from_gguf(path: Path, model: ModelInfo) -> QuantPlan:
    """The plan ``path`` (a quantized GGUF) was written with, for the float ``model``.

    ``PlanError`` naming the file and the first tensor that shows it is another model's
    (a missing or extra tensor, another shape), a tensor llama.cpp never quantizes stored in
    another type, or a type that does not fit its tensor's rows. A tensor type lwq does not
    know is refused while reading the header (``ModelFileError`` naming the tensor).
    ``preset`` is the stock mix that writes exactly these types, if any."""
    path = Path(path)
    written = open_model(path)
    types = _file_types(path, written, model)
    side = _sidecar_plan(path, written, model, types)
    if side is not None:
        return side
    with_imatrix = KV_IMATRIX_FILE in written.metadata or KV_IMATRIX_ENTRIES in written.metadata
    quantizable = {t.name for t in model.tensors if t.quantizable}
    plan = plan_from_types(
        model,
        {n: ty for n, ty in types.items() if n in quantizable},
        source=str(path),
        with_imatrix=with_imatrix,
    )
    return replace(plan, preset=_matching_preset(model, plan, written.file_type), _index={})


def _file_types(path: Path, written: ModelInfo, model: ModelInfo) -> dict[str, str]:
    """The file's tensor types, checked to be the types of ``model``'s tensors."""
    got = written.by_name
    for t in model.tensors:
        w = got.get(t.name)
        if w is None:
            raise PlanError(
                f"{path}: has no tensor {shown(t.name, 80)}; it is not a quantization of "
                f"{model.path.name}"
            )
        if w.shape != t.shape:
            raise PlanError(
                f"{path}: tensor {shown(t.name, 80)} has shape {list(w.shape)}, "
                f"{model.path.name} has {list(t.shape)}: another model"
            )
        if not t.quantizable and w.type != t.type:
            raise PlanError(
                f"{path}: tensor {shown(t.name, 80)} is {w.type}, {model.path.name} has "
                f"{t.type}, and llama.cpp never quantizes it: not made from this model"
            )
        if t.quantizable and effective_type(w.type, t.ne0) != w.type:
            raise PlanError(
                f"{path}: tensor {shown(t.name, 80)} is {w.type}, which does not fit its rows "
                f"(ne0={t.ne0}); not a file llama.cpp wrote"
            )
    names = set(model.by_name)
    for w in written.tensors:
        if w.name not in names:
            raise PlanError(
                f"{path}: tensor {shown(w.name, 80)} is not in {model.path.name}; "
                "it is another model's quantization"
            )
    return {n: w.type for n, w in got.items()}


def _sidecar_plan(
    path: Path, written: ModelInfo, model: ModelInfo, types: dict[str, str]
) -> QuantPlan | None:
    """The plan in lwq's sidecar if it still describes the file, else None (never an error:
    a stale or damaged sidecar only means the requested types are the file's)."""
    side = sidecar_path(path)
    try:
        if not side.is_file() or side.stat().st_size > MAX_PLAN_BYTES:
            return None
        data = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != "lwq-quantized":
            return None
        plan = plan_from_dict(model, data.get("plan"), source=str(side))
    except (OSError, ValueError, RecursionError, InputError):
        return None
    recorded = written.metadata.get(KV_PLAN_HASH)
    if recorded is not None and recorded != plan.content_hash():
        return None
    if plan.effective_types() != types:
        return None
    return plan


def _matching_preset(model: ModelInfo, plan: QuantPlan, file_type: int | None) -> str | None:
    """The stock mix (with or without an imatrix) whose types are exactly ``plan``'s; the
    file's own ``general.file_type`` is tried first, so Q4_K_M wins over an equal Q4_K_S."""
    want = plan.effective_types()
    order = list(PRESETS)
    first = PRESETS_BY_FTYPE.get(file_type) if file_type is not None else None
    if first is not None:
        order.remove(first.name)
        order.insert(0, first.name)
    for name in order:
        for imx in (plan.with_imatrix, not plan.with_imatrix):
            if plan_from_preset(model, name, imx).effective_types() == want:
                return name
    return None
