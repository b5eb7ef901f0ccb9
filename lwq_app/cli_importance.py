"""``lwq imatrix``, ``lwq stats`` and ``lwq plan --auto``: the importance commands.

``plan --auto --imatrix F`` scales the proxy by the KLD calibration that ``lwq calibrate``
kept in the model's project for that imatrix, unless ``--calibration``/``--no-calibration``.

Registered into the main parser by ``lwq_app.cli.build_parser`` through ``register(sub)``;
same grammar as every other command (``-o``, ``--threads``, ``--gpu-layers``, ``--json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli import ProgressBar, _common, _emit_json, _err, cmd_plan
from .core.errors import InputError
from .core.units import format_size, parse_size


def cmd_imatrix(a: argparse.Namespace) -> int:
    from .core.importance import collect_imatrix, read_text_file

    text = read_text_file(a.file)
    bar = ProgressBar()
    r = collect_imatrix(
        a.model,
        text,
        a.output,
        ctx=a.ctx,
        chunks=a.chunks,
        batch=a.batch,
        threads=a.threads,
        gpu_layers=a.gpu_layers,
        process_output=a.process_output,
        dataset=a.file,
        resume=a.resume,
        save_every=a.save_every,
        merge_with=a.in_file or (),
        progress=bar,
    )
    bar.close()
    cov = r.coverage
    _err(
        f"wrote {r.output}: {cov.n_entries} tensors, {r.n_chunks} chunks of {cov.chunk_size} "
        f"({r.chunks_this_run} this run), {r.seconds:.1f}s"
    )
    if cov.never_seen:
        _err(
            f"warning: {len(cov.never_seen)} tensor(s) got no data: {', '.join(cov.never_seen[:5])}"
        )
    for name, experts in list(cov.zero_count_experts.items())[:5]:
        _err(f"warning: {name}: experts with zero count {list(experts)}")
    if a.json:
        _emit_json({"output": str(r.output), "seconds": r.seconds, "coverage": cov.to_dict()})
    return 0


def cmd_stats(a: argparse.Namespace) -> int:
    from .core.imatrix import read_imatrix
    from .core.stats import compute_stats, format_stats

    st = compute_stats(read_imatrix(a.imatrix))
    if a.json:
        _emit_json(st.to_dict())
    else:
        sys.stdout.write(format_stats(st))
    return 0


def _budget(a: argparse.Namespace, model: Any) -> Any:
    from .core.autoplan import Budget, budget_from_bpw, budget_from_memory

    try:
        if a.target_bpw is not None:
            return budget_from_bpw(model, a.target_bpw)
        if a.target_size is not None:
            return Budget(parse_size(a.target_size), a.target_size)
        if a.target_memory is not None:
            from .core.memfit import measure_buffers

            buf = measure_buffers(model.path, a.context, gpu_layers=a.gpu_layers)
            _err(
                f"llama.cpp at context {a.context}: KV cache {format_size(buf.kv_cache)}, "
                f"compute {format_size(buf.compute)}, output {format_size(buf.output)} (measured)"
            )
            return budget_from_memory(model, parse_size(a.target_memory), a.context, buf)
    except ValueError as e:
        raise InputError(str(e)) from None
    raise InputError("--auto needs one of --target-bpw, --target-size, --target-memory")


def _calibration_for(a: argparse.Namespace, sens: Any) -> Path | None:
    """``--calibration``, else the project's calibration for (model, imatrix) if measured."""
    if a.calibration:
        return Path(a.calibration)
    if a.no_calibration:
        return None
    if not a.imatrix:
        _err("no --imatrix: planning with the raw proxy (a calibration needs an imatrix)")
        return None
    from .core.project import find_calibration

    found = find_calibration(sens.model_hash, sens.imatrix_hash)
    if found is None:
        _err(
            "no calibration for this model and imatrix: planning with the raw proxy "
            "(lwq calibrate measures one)"
        )
    return found


def cmd_plan_auto(a: argparse.Namespace) -> int:
    if not a.auto:
        return cmd_plan(a)
    from .core.autoplan import auto_plan, explain_groups
    from .core.model import open_model
    from .core.sensitivity import CANDIDATES, measure_sensitivity

    if a.set:
        raise InputError("--set cannot be combined with --auto; edit the saved plan instead")
    model = open_model(a.model)
    budget = _budget(a, model)
    bar = ProgressBar()
    types = tuple(x.strip().upper() for x in a.types.split(",")) if a.types else CANDIDATES
    unknown = [x for x in types if x not in CANDIDATES]
    if unknown:
        raise InputError(f"--types: unknown candidate type(s) {', '.join(unknown)}")
    sens = measure_sensitivity(
        model.path, a.imatrix, max_rows=a.max_rows, types=types, progress=bar
    )
    bar.close()
    cal_path = _calibration_for(a, sens)
    factors = None
    if cal_path is not None:
        from .core.calibrate import Calibration

        cal = Calibration.load(cal_path)
        cal.check(cal_path, sens.model_hash, sens.imatrix_hash)
        factors = cal.factors(model)
        _err(f"using calibration from {cal_path}")
    r = auto_plan(model, sens, budget, factors=factors, with_imatrix=a.imatrix is not None)
    from .cli import _print_plan_summary

    _print_plan_summary(r.plan, sys.stderr)
    _err(
        f"budget {budget.label}: {format_size(budget.bytes)}, plan uses "
        f"{format_size(r.plan.size_bytes)} ({100 * r.used:.2f}%)"
    )
    ex = explain_groups(r.plan, model, a.compare, a.imatrix is not None)
    _err(
        f"vs stock {ex.preset} ({ex.size_delta_bytes:+d} bytes): bits gained (+) / lost (-) by kind:"
    )
    _err("  " + "  ".join(f"{k} {v / 8e3:+.1f}kB" for k, v in sorted(ex.by_kind.items()) if v))
    layers = sorted(ex.by_layer.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
    _err("  by layer: " + " ".join(
        f"{'-' if k is None else k}:{v / 8e3:+.1f}kB" for k, v in layers if v))  # fmt: skip
    diff = ex.tensors
    for row in diff[:12]:
        _err(
            f"  {row['tensor']:32} {row['stock']:>7} -> {row['auto']:<7} {row['delta_bits']:+d} bits"
        )
    if len(diff) > 12:
        _err(f"  … {len(diff) - 12} more tensors differ from {ex.preset}")
    if a.output:
        r.plan.save(a.output)
        _err(f"wrote {a.output}")
    if a.json:
        d = r.plan.to_dict()
        d["calibration"] = None if cal_path is None else str(cal_path)
        d["budget_bytes"] = budget.bytes
        d["used"] = r.used
        d["vs_stock"] = {
            "preset": ex.preset,
            "size_delta_bytes": ex.size_delta_bytes,
            "bits_by_layer": {str(k): v for k, v in ex.by_layer.items()},
            "bits_by_kind": ex.by_kind,
            "tensors": diff,
        }
        _emit_json(d)
    return 0


def register(sub: Any) -> None:
    """Add ``imatrix`` and ``stats`` and extend ``plan`` with ``--auto``."""
    p = sub.add_parser("imatrix", help="collect an importance matrix (llama-imatrix compatible)")
    p.add_argument("model")
    p.add_argument("-f", "--file", required=True, metavar="TEXT", help="calibration text file")
    p.add_argument("--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=int, default=-1, metavar="N", help="chunks (default all)")
    p.add_argument("--batch", type=int, default=512, metavar="N", help="tokens per decode")
    p.add_argument("--resume", action="store_true", help="continue from OUT.resume.gguf")
    p.add_argument("--save-every", type=int, default=10, metavar="N", help="checkpoint interval")
    p.add_argument(
        "--process-output", action="store_true", help="also collect output.weight (tied too)"
    )
    p.add_argument("--in-file", action="append", metavar="F", help="merge an earlier imatrix")
    _common(p, required_output=True)
    p.set_defaults(func=cmd_imatrix)

    p = sub.add_parser("stats", help="llama-imatrix --show-statistics for an imatrix file")
    p.add_argument("imatrix")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_stats)

    plan = sub.choices["plan"]
    group = next(g for g in plan._mutually_exclusive_groups if g.required)
    group.add_argument("--auto", action="store_true", help="choose types under a budget")
    t = plan.add_mutually_exclusive_group()
    t.add_argument("--target-bpw", type=float, metavar="X", help="bits per weight budget")
    t.add_argument("--target-size", metavar="SIZE", help="tensor-data budget, e.g. 3.9GB")
    t.add_argument("--target-memory", metavar="SIZE", help="memory incl. KV cache, e.g. 8GiB")
    plan.add_argument("--context", type=int, default=4096, metavar="N", help="for --target-memory")
    plan.add_argument("--max-rows", type=int, default=256, metavar="N", help="rows sampled")
    c = plan.add_mutually_exclusive_group()
    c.add_argument(
        "--calibration",
        metavar="FILE",
        help="KLD calibration of the proxy (default: the model project's one for this imatrix, "
        "made by lwq calibrate)",
    )
    c.add_argument(
        "--no-calibration", action="store_true", help="plan with the raw proxy even if calibrated"
    )
    plan.add_argument("--types", metavar="T,T,…", help="candidate types (default: all)")
    plan.add_argument(
        "--compare",
        default=None,
        metavar="PRESET",
        help="stock mix to explain the plan against (default: the one nearest in size)",
    )
    plan.set_defaults(func=cmd_plan_auto)
