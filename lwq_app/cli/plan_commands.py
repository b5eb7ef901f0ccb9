"""``lwq plan`` (from a preset, a saved plan, or ``--auto`` under a budget), ``lwq quantize``
and ``lwq recipe``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from ..core.jobs.errors import InputError
from ..core.jobs.units import format_size
from .output import ProgressBar, common_args, emit_json, err, opt_path, plan_source_args


def _load_plan(a: argparse.Namespace) -> Any:
    """The ``PlanResult`` of ``--preset``/``--plan``/``--from``, ``--set``, ``--strict`` and
    ``--imatrix``."""
    from ..core.plan.quant_plan import PlanRequest, make_plan

    changes = []
    for item in getattr(a, "set", None) or ():
        name, sep, type_name = item.partition("=")
        if not sep:
            raise InputError(f"--set {item!r}: expected TENSOR=TYPE")
        changes.append((name, type_name))
    return make_plan(
        PlanRequest(
            Path(a.model),
            preset=getattr(a, "preset", None) or None,
            plan_file=Path(a.plan_file) if a.plan_file else None,
            changes=tuple(changes),
            strict=getattr(a, "strict", False),
            imatrix=Path(a.imatrix) if getattr(a, "imatrix", None) else None,
        )
    )


def _file_size(a: argparse.Namespace, plan: Any) -> Any:
    """The ``FileSize`` of the GGUF ``lwq quantize`` writes for ``plan`` (with ``--imatrix``)."""
    from ..core.modelfile.inventory import open_model
    from ..core.plan.file_size import predict_file_size

    imatrix = Path(a.imatrix) if getattr(a, "imatrix", None) else None
    return predict_file_size(plan, open_model(Path(a.model)), imatrix=imatrix)


def _sizes_line(fs: Any) -> str:
    """``file 98.20 MB on disk (tensor data 96.40 MB + metadata and padding 1.80 MB)``."""
    return (
        f"file {format_size(fs.total)} on disk (tensor data {format_size(fs.tensor_data)} + "
        f"metadata and padding {format_size(fs.metadata + fs.padding)})"
    )


def _print_plan_summary(plan: Any, out: TextIO) -> None:
    print(f"{'layer':>6} {'params':>10} {'size':>12} {'bpw':>6}  types", file=out)
    for r in plan.layer_summary():
        layer = "-" if r.layer is None else str(r.layer)
        types = " ".join(f"{k}×{v}" for k, v in sorted(r.types))
        fb = f"  ({r.fallbacks} fallback)" if r.fallbacks else ""
        print(
            f"{layer:>6} {r.params:>10} {format_size(r.bytes):>12} {r.bpw:6.2f}  {types}{fb}",
            file=out,
        )
    print(
        f"total: tensor data {format_size(plan.size_bytes)} ({plan.size_bytes} bytes), "
        f"{plan.bpw:.4f} bpw",
        file=out,
    )
    w = plan.warnings()
    if w:
        print(f"{len(w)} tensor(s) fall back (requested type does not fit the row size):", file=out)
        for x in w[:8]:
            print(f"  warning: {x.message}", file=out)
        if len(w) > 8:
            print(f"  … and {len(w) - 8} more (see the plan JSON / --json)", file=out)


def cmd_plan(a: argparse.Namespace) -> int:
    if a.auto:
        return _plan_auto(a)
    r = _load_plan(a)
    _print_plan_summary(r.plan, sys.stderr)
    fs = _file_size(a, r.plan)
    err(_sizes_line(fs))
    if a.output:
        r.plan.save(a.output)
        err(f"wrote {a.output}")
    if a.json:
        emit_json({**r.to_json(), "file_bytes": fs.total})
    return 0


def cmd_quantize(a: argparse.Namespace) -> int:
    from ..core.plan.quantize import QuantizeRequest, quantize

    plan = _load_plan(a).plan
    for w in plan.warnings()[:3]:
        err(f"warning: {w.message}")
    if len(plan.warnings()) > 3:
        err(f"warning: … {len(plan.warnings()) - 3} more tensors fall back")
    request = QuantizeRequest(
        Path(a.model),
        plan,
        Path(a.output),
        imatrix=Path(a.imatrix) if a.imatrix else None,
        threads=a.threads,
        base_ftype=a.base_ftype,
        hash_output=a.hash,
    )
    with ProgressBar() as bar:
        r = quantize(request, progress=bar)
    err(
        f"wrote {r.output}: {format_size(r.tensor_bytes)} tensor data, {plan.bpw:.4f} bpw, "
        f"{r.n_overrides} per-tensor overrides on base {r.base_ftype}, {r.seconds:.1f}s"
    )
    err(f"plan kept in {r.sidecar}")
    if a.json:
        emit_json(r.to_json())
    return 0


def cmd_recipe(a: argparse.Namespace) -> int:
    import shlex

    from ..core.plan.recipe import RecipeRequest, export_recipe

    r = export_recipe(
        RecipeRequest(
            Path(a.model), Path(a.plan_file), types_file=opt_path(a.types_file),
            output=opt_path(a.output), imatrix=opt_path(a.imatrix), threads=a.threads,
            base_ftype=a.base_ftype,
        )
    )  # fmt: skip
    if a.json:
        emit_json(r.to_json())
    else:
        print(shlex.join(r.command))
    err(f"wrote {r.tensor_type_file} ({r.n_overrides} anchored tensor patterns)")
    return 0


# --- parser -----------------------------------------------------------------------------------


def _budget(a: argparse.Namespace) -> Any:
    """The budget the arguments state (the job checks and measures it)."""
    from ..core.optimize.auto_plan import BpwBudget, MemoryBudget, SizeBudget

    if a.target_bpw is not None:
        return BpwBudget(a.target_bpw)
    if a.target_size is not None:
        return SizeBudget.parse(a.target_size)
    if a.target_data_size is not None:
        return SizeBudget.parse(a.target_data_size, on_disk=False)
    if a.target_memory is not None:
        return MemoryBudget.parse(a.target_memory, a.context, a.gpu_layers)
    raise InputError(
        "--auto needs one of --target-bpw, --target-size, --target-data-size, --target-memory"
    )


def _calibration_for(a: argparse.Namespace) -> Any:
    """``--calibration`` FILE, ``--no-calibration`` (disabled), else None: the project's."""
    from ..core.optimize.auto_plan import DISABLED

    if a.calibration:
        return Path(a.calibration)
    return DISABLED if a.no_calibration else None


def _plan_auto(a: argparse.Namespace) -> int:
    from ..core.optimize.auto_plan import AutoPlanRequest, CalibrationSource, auto_plan

    if a.set:
        raise InputError("--set cannot be combined with --auto; edit the saved plan instead")
    request = AutoPlanRequest(
        model=Path(a.model),
        budget=_budget(a),
        imatrix=None if a.imatrix is None else Path(a.imatrix),
        calibration=_calibration_for(a),
        max_rows=a.max_rows,
        types=tuple(a.types.split(",")) if a.types else None,
        compare=a.compare,
    )
    with ProgressBar() as bar:
        r = auto_plan(request, progress=bar)
    if r.buffers is not None:
        buf = r.buffers
        err(
            f"llama.cpp at context {buf.n_ctx}: KV cache {format_size(buf.kv_cache)}, "
            f"compute {format_size(buf.compute)}, output {format_size(buf.output)} (measured)"
        )
    if r.calibration_source is CalibrationSource.NO_IMATRIX:
        err("no --imatrix: planning with the raw proxy (a calibration needs an imatrix)")
    elif r.calibration_source is CalibrationSource.NOT_MEASURED:
        err(
            "no calibration for this model and imatrix: planning with the raw proxy "
            "(lwq calibrate measures one)"
        )
    elif r.calibration_path is not None:
        err(f"using calibration from {r.calibration_path}")
    _print_plan_summary(r.plan, sys.stderr)
    budget, fs = r.budget, r.file_size
    err(_sizes_line(fs))
    used = (
        f"file {format_size(fs.total)} on disk"
        if budget.on_disk
        else f"tensor data {format_size(r.plan.size_bytes)}"
    )
    err(
        f"budget {budget.label}: {format_size(budget.bytes)} {budget.kind}, plan: {used} "
        f"({100 * r.used:.2f}%)"
    )
    ex = r.explanation
    err(
        f"vs stock {ex.preset} ({ex.size_delta_bytes:+d} bytes): bits gained (+) / lost (-) by kind:"
    )
    err("  " + "  ".join(f"{k} {v / 8e3:+.1f}kB" for k, v in sorted(ex.by_kind.items()) if v))
    layers = sorted(ex.by_layer.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
    err("  by layer: " + " ".join(
        f"{'-' if k is None else k}:{v / 8e3:+.1f}kB" for k, v in layers if v))  # fmt: skip
    for row in ex.tensors[:12]:
        err(f"  {row.tensor:32} {row.stock:>7} -> {row.auto:<7} {row.delta_bits:+d} bits")
    if len(ex.tensors) > 12:
        err(f"  … {len(ex.tensors) - 12} more tensors differ from {ex.preset}")
    if a.output:
        r.plan.save(a.output)
        err(f"wrote {a.output}")
    if a.json:
        emit_json(r.to_dict())
    return 0


def register(sub: Any) -> None:
    """Add ``plan`` (preset, saved plan or ``--auto``), ``quantize`` and ``recipe``."""
    p = sub.add_parser("plan", help="build a per-tensor plan from a preset or a saved plan")
    p.add_argument("model")
    plan_source_args(p, "--from", auto=True)
    p.add_argument("--set", action="append", metavar="TENSOR=TYPE", help="change one tensor's type")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--target-bpw", type=float, metavar="X", help="bits per weight budget")
    t.add_argument(
        "--target-size",
        metavar="SIZE",
        help="size of the GGUF file on disk (tensor data, metadata and padding), e.g. 3.9GB",
    )
    t.add_argument(
        "--target-data-size", metavar="SIZE", help="size of the tensor data only, e.g. 3.8GB"
    )
    t.add_argument("--target-memory", metavar="SIZE", help="memory incl. KV cache, e.g. 8GiB")
    p.add_argument("--context", type=int, default=4096, metavar="N", help="for --target-memory")
    p.add_argument("--max-rows", type=int, default=256, metavar="N", help="rows sampled")
    c = p.add_mutually_exclusive_group()
    c.add_argument(
        "--calibration",
        metavar="FILE",
        help="KLD calibration of the proxy (default: the model project's one for this imatrix, "
        "made by lwq calibrate)",
    )
    c.add_argument(
        "--no-calibration", action="store_true", help="plan with the raw proxy even if calibrated"
    )
    p.add_argument("--types", metavar="T,T,…", help="candidate types (default: all)")
    p.add_argument(
        "--compare",
        default=None,
        metavar="PRESET",
        help="stock mix to explain the plan against (default: the one nearest in size)",
    )
    common_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("quantize", help="quantize a model with a plan through llama.cpp")
    p.add_argument("model")
    plan_source_args(p, "--plan")
    p.add_argument(
        "--hash",
        action="store_true",
        help="record the output's tensor-data SHA-256 in the plan sidecar (re-reads the file)",
    )
    p.add_argument(
        "--base-ftype",
        metavar="NAME",
        help="llama_ftype recorded in the file (default: the plan's preset)",
    )
    common_args(p, required_output=True)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("recipe", help="print the llama-quantize command that rebuilds a plan")
    p.add_argument("plan_file", metavar="PLAN.json")
    p.add_argument("--model", required=True, help="the source GGUF the plan is for")
    p.add_argument("--imatrix", metavar="FILE")
    p.add_argument("--types-file", metavar="FILE", help="where to write the --tensor-type-file")
    p.add_argument("--base-ftype", metavar="NAME")
    common_args(p)
    p.set_defaults(func=cmd_recipe)
