"""The ``lwq`` command line: a thin layer over the core jobs.

One grammar for every command: ``-o OUT``, ``--threads N``, ``--gpu-layers N``, ``--json``
(machine-readable result on stdout; everything else on stderr), ``-f TEXT`` for text input,
sizes with explicit units. Errors print one line naming the file/tensor and exit non-zero
(1: bad input or failed job, 2: usage, 130: cancelled).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .core.errors import Cancelled, LwqError
from .core.progress import Progress
from .core.units import format_size


class ProgressBar:
    """A text progress bar on stderr (redrawn in place on a terminal, sparse lines otherwise)."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._last_line = ""
        self._last_pct = -100
        self._t0 = time.monotonic()

    def __call__(self, p: Progress) -> None:
        frac = p.fraction
        pct = int(frac * 100)
        if not self.tty and pct - self._last_pct < 10 and p.done < p.total:
            return
        self._last_pct = pct
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self._t0
        eta = f" ETA {elapsed / frac - elapsed:4.0f}s" if 0.02 < frac < 1 else ""
        line = f"{p.stage.value:>8} [{bar}] {pct:3d}% {p.done}/{p.total}{eta} {p.message[:40]}"
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)))
            if p.done >= p.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self._last_line = line
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")


# --- commands ---------------------------------------------------------------------------------


def cmd_inspect(a: argparse.Namespace) -> int:
    from .core.model import open_model

    m = open_model(a.model)
    if a.json:
        _emit_json(
            {
                "paths": [str(p) for p in m.paths],
                "architecture": m.architecture,
                "name": m.name,
                "n_layer": m.n_layer,
                "n_embd": m.n_embd,
                "n_head": m.n_head,
                "n_head_kv": m.n_head_kv,
                "n_gqa": m.n_gqa,
                "n_ff": m.n_ff,
                "n_expert": m.n_expert,
                "n_vocab": m.n_vocab,
                "tied_embeddings": m.tied_embeddings,
                "n_params": m.n_params,
                "tensor_data_bytes": m.tensor_data_bytes,
                "tensors": [
                    {
                        "name": t.name,
                        "layer": t.layer,
                        "kind": t.kind,
                        "shape": list(t.shape),
                        "n_params": t.n_params,
                        "type": t.type,
                        "quantizable": t.quantizable,
                        "bytes": t.n_bytes,
                    }
                    for t in m.tensors
                ],
            }
        )
        return 0
    out = sys.stderr if a.json else sys.stdout
    print(f"{m.path}  ({len(m.paths)} file(s))", file=out)
    print(
        f"architecture {m.architecture} | layers {m.n_layer} | n_embd {m.n_embd} | heads "
        f"{m.n_head}/{m.n_head_kv} kv (GQA {m.n_gqa}) | experts {m.n_expert} | vocab {m.n_vocab} | "
        f"tied embeddings {'yes' if m.tied_embeddings else 'no'}",
        file=out,
    )
    print(
        f"{m.n_params / 1e6:.1f}M parameters, tensor data {format_size(m.tensor_data_bytes)} "
        f"({format_size(m.tensor_data_bytes, binary=True)})",
        file=out,
    )
    print(f"{'tensor':40} {'kind':16} {'shape':>22} {'type':>8} quant", file=out)
    for t in m.tensors:
        shape = "×".join(map(str, t.shape))
        print(
            f"{t.name:40} {t.kind:16} {shape:>22} {t.type:>8} {'yes' if t.quantizable else '-'}",
            file=out,
        )
    return 0


def cmd_upcast(a: argparse.Namespace) -> int:
    from .core.upcast import upcast

    bar = ProgressBar()
    r = upcast(a.model, a.output, target=a.type, progress=bar)
    bar.close()
    _err(
        f"wrote {r.output} ({r.n_converted}/{r.n_tensors} tensors converted, "
        f"{format_size(r.bytes_written)}, {r.seconds:.1f}s)"
    )
    if a.json:
        _emit_json({"output": str(r.output), "bytes": r.bytes_written, "converted": r.n_converted})
    return 0


def _load_plan(a: argparse.Namespace, model: Any) -> Any:
    from .core.plan import load_plan, plan_from_preset

    if getattr(a, "preset", None):
        try:
            plan = plan_from_preset(model, a.preset, with_imatrix=a.imatrix is not None)
        except KeyError as e:
            raise LwqError(str(e.args[0])) from None
    else:
        plan = load_plan(a.plan_file, model, strict=a.strict)
    if a.strict and plan.warnings():
        from .core.errors import PlanError

        raise PlanError(plan.warnings()[0].message + " (--strict)")
    return plan


def _print_plan_summary(plan: Any, out: TextIO) -> None:
    print(f"{'layer':>6} {'params':>10} {'size':>12} {'bpw':>6}  types", file=out)
    for r in plan.layer_summary():
        layer = "-" if r["layer"] is None else str(r["layer"])
        types = " ".join(f"{k}×{v}" for k, v in sorted(r["types"].items()))
        fb = f"  ({r['fallbacks']} fallback)" if r["fallbacks"] else ""
        print(
            f"{layer:>6} {r['params']:>10} {format_size(r['bytes']):>12} {r['bpw']:6.2f}  {types}{fb}",
            file=out,
        )
    print(
        f"total: {format_size(plan.size_bytes)} ({plan.size_bytes} bytes of tensor data), "
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
    from .core.model import open_model

    model = open_model(a.model)
    plan = _load_plan(a, model)
    if a.set:
        changes = {}
        for item in a.set:
            name, sep, type_name = item.partition("=")
            if not sep:
                raise LwqError(f"--set {item!r}: expected TENSOR=TYPE")
            changes[name] = type_name
        plan = plan.with_types(changes, strict=a.strict)
    if a.imatrix:
        from .core.imatrix import read_imatrix

        read_imatrix(a.imatrix).check_model(model, plan.needs_imatrix())
    _print_plan_summary(plan, sys.stderr)
    if a.output:
        plan.save(a.output)
        _err(f"wrote {a.output}")
    if a.json:
        d = plan.to_dict()
        d["layers"] = plan.layer_summary()
        d["fallbacks"] = [
            {"tensor": t.name, "requested": t.requested, "effective": t.effective}
            for t in plan.tensors
            if t.fallback
        ]
        _emit_json(d)
    return 0


def cmd_quantize(a: argparse.Namespace) -> int:
    from .core.model import open_model
    from .core.quantize import quantize

    model = open_model(a.model)
    plan = _load_plan(a, model)
    for w in plan.warnings()[:3]:
        _err(f"warning: {w.message}")
    if len(plan.warnings()) > 3:
        _err(f"warning: … {len(plan.warnings()) - 3} more tensors fall back")
    bar = ProgressBar()
    r = quantize(
        model,
        plan,
        a.output,
        imatrix_path=a.imatrix,
        threads=a.threads,
        base_ftype=a.base_ftype,
        hash_output=a.hash,
        progress=bar,
    )
    bar.close()
    _err(
        f"wrote {r.output}: {format_size(r.tensor_bytes)} tensor data, {plan.bpw:.4f} bpw, "
        f"{r.n_overrides} per-tensor overrides on base {r.base_ftype}, {r.seconds:.1f}s"
    )
    _err(f"plan kept in {r.sidecar}")
    if a.json:
        _emit_json(
            {
                "output": str(r.output),
                "sidecar": str(r.sidecar),
                "tensor_bytes": r.tensor_bytes,
                "bpw": plan.bpw,
                "base_ftype": r.base_ftype,
                "n_overrides": r.n_overrides,
                "tensor_data_sha256": r.tensor_data_sha256,
                "seconds": r.seconds,
            }
        )
    return 0


def cmd_recipe(a: argparse.Namespace) -> int:
    from .core.model import open_model
    from .core.plan import load_plan
    from .core.recipe import make_recipe

    model = open_model(a.model)
    plan = load_plan(a.plan_file, model)
    recipe = make_recipe(plan, a.base_ftype)
    types_file = Path(a.types_file or Path(a.plan_file).with_suffix(".tensor-types.txt"))
    from .core.fileio import atomic_write_text

    atomic_write_text(types_file, recipe.tensor_types)
    out = a.output or str(Path(a.model).with_name(Path(a.model).stem + "-lwq.gguf"))
    cmd = recipe.command(str(a.model), out, str(types_file), a.imatrix, a.threads)
    import shlex

    if a.json:
        _emit_json(
            {
                "command": cmd,
                "tensor_type_file": str(types_file),
                "n_overrides": recipe.n_overrides,
                "base_ftype": recipe.base_ftype,
            }
        )
    else:
        print(shlex.join(cmd))
    _err(f"wrote {types_file} ({recipe.n_overrides} anchored tensor patterns)")
    return 0


# --- parser -----------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, output: bool = True, required_output: bool = False) -> None:
    if output:
        p.add_argument("-o", "--output", required=required_output, help="output file")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="threads (0 = all cores)")
    p.add_argument(
        "--gpu-layers",
        type=int,
        default=0,
        metavar="N",
        help="layers to offload to a GPU backend, where the build has one",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")


def _plan_source(p: argparse.ArgumentParser, from_flag: str) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", metavar="NAME", help="a llama.cpp stock mix, e.g. Q4_K_M")
    g.add_argument(from_flag, dest="plan_file", metavar="PLAN.json", help="a saved lwq plan")
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix (GGUF or .dat)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a requested type that does not fit a tensor's shape is an error",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lwq", description="Layer-wise quantization of LLMs through llama.cpp."
    )
    ap.add_argument("--version", action="version", version=f"lwq {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="list a GGUF model's tensors and architecture")
    p.add_argument("model", help="GGUF file (any shard of a split model)")
    _common(p, output=False)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("upcast", help="expand a quantized GGUF to F16/BF16/F32 as a new source")
    p.add_argument("model")
    p.add_argument("--type", default="F16", choices=["F16", "BF16", "F32"])
    _common(p, required_output=True)
    p.set_defaults(func=cmd_upcast)

    p = sub.add_parser("plan", help="build a per-tensor plan from a preset or a saved plan")
    p.add_argument("model")
    _plan_source(p, "--from")
    p.add_argument("--set", action="append", metavar="TENSOR=TYPE", help="change one tensor's type")
    _common(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("quantize", help="quantize a model with a plan through llama.cpp")
    p.add_argument("model")
    _plan_source(p, "--plan")
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
    _common(p, required_output=True)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("recipe", help="print the llama-quantize command that rebuilds a plan")
    p.add_argument("plan_file", metavar="PLAN.json")
    p.add_argument("--model", required=True, help="the source GGUF the plan is for")
    p.add_argument("--imatrix", metavar="FILE")
    p.add_argument("--types-file", metavar="FILE", help="where to write the --tensor-type-file")
    p.add_argument("--base-ftype", metavar="NAME")
    _common(p)
    p.set_defaults(func=cmd_recipe)
    from .cli_importance import register  # imatrix, stats, plan --auto (issue #4)

    register(sub)
    from .cli_calibrate import register as register_calibrate  # calibrate (issue #4)

    register_calibrate(sub)
    from .cli_eval import register as register_eval  # eval, tasks, bench, report (issue #3)

    register_eval(sub)
    from .cli_data import register as register_data  # fetch: Hub datasets (issues #3, #4)

    register_data(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Cancelled:
        _err("lwq: cancelled; nothing was written")
        return 130
    except KeyboardInterrupt:
        _err("lwq: interrupted; nothing was written")
        return 130
    except LwqError as e:
        _err(f"lwq: error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
