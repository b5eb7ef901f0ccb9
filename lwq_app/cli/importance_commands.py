"""``lwq imatrix`` and ``lwq stats``: the importance commands (``plan --auto`` is in
``plan_commands``).

Registered into the main parser by ``lwq_app.cli.build_parser`` through ``register(sub)``;
same grammar as every other command (``-o``, ``--threads``, ``--gpu-layers``, ``--json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .output import ProgressBar, common_args, emit_json, err


def cmd_imatrix(a: argparse.Namespace) -> int:
    from ..core.importance.collection import ImatrixRequest, collect_imatrix

    request = ImatrixRequest(
        model=Path(a.model),
        text_file=Path(a.file),
        output=Path(a.output),
        ctx=a.ctx,
        chunks=a.chunks,
        batch=a.batch,
        threads=a.threads,
        gpu_layers=a.gpu_layers,
        process_output=a.process_output,
        resume=a.resume,
        save_every=a.save_every,
        merge_with=tuple(Path(f) for f in a.in_file or ()),
        dataset=a.file,
    )
    with ProgressBar() as bar:
        r = collect_imatrix(request, progress=bar)
    cov = r.coverage
    err(
        f"wrote {r.output}: {cov.n_entries} tensors, {r.n_chunks} chunks of {cov.chunk_size} "
        f"({r.chunks_this_run} this run), {r.seconds:.1f}s"
    )
    if cov.never_seen:
        err(
            f"warning: {len(cov.never_seen)} tensor(s) got no data: {', '.join(cov.never_seen[:5])}"
        )
    for name, experts in list(cov.zero_count_experts.items())[:5]:
        err(f"warning: {name}: experts with zero count {list(experts)}")
    if a.json:
        emit_json({"output": str(r.output), "seconds": r.seconds, "coverage": cov.to_dict()})
    return 0


def cmd_stats(a: argparse.Namespace) -> int:
    from ..core.importance.statistics import StatisticsRequest, format_stats, imatrix_statistics

    st = imatrix_statistics(StatisticsRequest(Path(a.imatrix)))
    if a.json:
        emit_json(st.to_dict())
    else:
        sys.stdout.write(format_stats(st))
    return 0


def register(sub: Any) -> None:
    """Add ``imatrix`` and ``stats``."""
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
    common_args(p, required_output=True)
    p.set_defaults(func=cmd_imatrix)

    p = sub.add_parser("stats", help="llama-imatrix --show-statistics for an imatrix file")
    p.add_argument("imatrix")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_stats)
