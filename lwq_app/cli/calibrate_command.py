"""``lwq calibrate``: measure the KLD calibration of the planner's proxy, keep it in the project.

Registered into the main parser by ``lwq_app.cli.build_parser`` through ``register(sub)``;
same grammar as every other command (``-o``, ``--threads``, ``--gpu-layers``, ``--json``,
``-f TEXT``). The calibration is saved in the model's project folder (``core/results/project.py``),
where ``lwq plan --auto --imatrix F`` finds it; ``-o`` writes a copy as well. Ctrl-C stops
the run (exit 130) and writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, TextIO

from .output import ProgressBar, common_args, emit_json, err

#: as ``core.optimize.calibration.DEFAULT_GROUPS/CHUNKS`` (not imported: that pulls numpy
#: into --help)
DEFAULT_GROUPS = 3
DEFAULT_CHUNKS = 4


def _layers(layers: tuple[int, ...]) -> str:
    return f"{layers[0]}-{layers[-1]}" if layers else "-"


def print_factors(cal: Any, out: TextIO) -> None:
    """One row per probe: ΔKLD, proxy error, factor and the factor relative to the median."""
    factors = [cal.factor(p) for p in cal.points]
    mid = statistics.median(factors) if factors else 1.0
    print(f"baseline (all Q8_0) KLD {cal.baseline_kld:.6f}", file=out)
    print(f"{'kind':16} {'layers':>7} {'probe':>7} {'ΔKLD':>10} {'proxy':>10} "
          f"{'factor':>9} {'×median':>8}", file=out)  # fmt: skip
    for p, f in zip(cal.points, factors, strict=True):
        print(
            f"{p.kind:16} {_layers(p.layers):>7} {p.probe:>7} {p.kld:10.6f} {p.proxy:10.3g} "
            f"{f:9.3g} {f / mid if mid > 0 else float('nan'):8.2f}",
            file=out,
        )


def cmd_calibrate(a: argparse.Namespace) -> int:
    from ..core.optimize.calibration import DEFAULT_TEXT, CalibrateRequest, calibrate

    if a.file is None:
        err(f"no -f TEXT: using the bundled calibration text ({DEFAULT_TEXT.name})")
    request = CalibrateRequest(
        model=Path(a.model),
        imatrix=Path(a.imatrix),
        text=None if a.file is None else Path(a.file),
        groups=a.groups,
        chunks=a.chunks,
        ctx=a.ctx,
        max_rows=a.max_rows,
        threads=a.threads,
        gpu_layers=a.gpu_layers,
        copy_to=None if a.output is None else Path(a.output),
    )
    with ProgressBar() as bars:
        run = calibrate(request, progress=bars)
    cal = run.calibration
    err(f"wrote {run.path} ({len(cal.points)} probes, {run.seconds:.0f}s)")
    if run.copy is not None:
        err(f"wrote {a.output}")
    out = sys.stderr if a.json else sys.stdout
    print_factors(cal, out)
    if a.json:
        emit_json(
            {
                "calibration": str(run.path),
                "output": a.output,
                "model_hash": cal.model_hash,
                "imatrix_hash": cal.imatrix_hash,
                "baseline_kld": cal.baseline_kld,
                "settings": dict(cal.settings),
                "points": [
                    {
                        "kind": p.kind,
                        "layers": list(p.layers),
                        "probe": p.probe,
                        "proxy": p.proxy,
                        "kld": p.kld,
                        "factor": cal.factor(p),
                    }
                    for p in cal.points
                ],
                "seconds": run.seconds,
            }
        )
    return 0


def register(sub: Any) -> None:
    """Add ``calibrate``."""
    p = sub.add_parser(
        "calibrate",
        help="measure per-kind/depth KLD factors for plan --auto (kept in the model's project)",
        description=(
            "Quantize each tensor kind × depth group alone (everything else Q8_0), measure the "
            "KLD it adds on a calibration text and store ΔKLD per unit of proxy error in the "
            "model's project folder, where `lwq plan --auto --imatrix F` picks it up."
        ),
    )
    p.add_argument("model", help="the F16/BF16/F32 source GGUF")
    p.add_argument("--imatrix", required=True, metavar="FILE", help="importance matrix")
    p.add_argument(
        "-f",
        "--file",
        metavar="TEXT",
        help="text for the KLD runs (default: the bundled calibration text; keep it apart "
        "from the text you evaluate on)",
    )
    p.add_argument(
        "--chunks",
        type=int,
        default=DEFAULT_CHUNKS,
        metavar="N",
        help=f"KLD chunks per probe (default {DEFAULT_CHUNKS})",
    )
    p.add_argument(
        "--groups",
        type=int,
        default=DEFAULT_GROUPS,
        metavar="N",
        help=f"depth groups per tensor kind (default {DEFAULT_GROUPS})",
    )
    p.add_argument("--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    p.add_argument(
        "--max-rows",
        type=int,
        default=256,
        metavar="N",
        help="rows sampled for the proxy (as plan --auto)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="also write a copy here")
    common_args(p, output=False)
    p.set_defaults(func=cmd_calibrate)
