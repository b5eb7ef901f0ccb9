"""``lwq inspect`` and ``lwq upcast``: what a model file holds, and a float source from a
quantized one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core.jobs.units import format_size
from .output import ProgressBar, common_args, emit_json, err


def cmd_inspect(a: argparse.Namespace) -> int:
    from ..core.modelfile.inventory import open_model

    m = open_model(a.model)
    if a.json:
        emit_json(m.to_json())
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
    from ..core.modelfile.upcast import UpcastRequest, upcast

    with ProgressBar() as bar:
        r = upcast(UpcastRequest(Path(a.model), Path(a.output), a.type), progress=bar)
    err(
        f"wrote {r.output} ({r.n_converted}/{r.n_tensors} tensors converted, "
        f"{format_size(r.bytes_written)}, {r.seconds:.1f}s)"
    )
    if a.json:
        emit_json({"output": str(r.output), "bytes": r.bytes_written, "converted": r.n_converted})
    return 0


def register(sub: Any) -> None:
    """Add ``inspect`` and ``upcast``."""
    p = sub.add_parser("inspect", help="list a GGUF model's tensors and architecture")
    p.add_argument("model", help="GGUF file (any shard of a split model)")
    common_args(p, output=False)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("upcast", help="expand a quantized GGUF to F16/BF16/F32 as a new source")
    p.add_argument("model")
    p.add_argument("--type", default="F16", choices=["F16", "BF16", "F32"])
    common_args(p, required_output=True)
    p.set_defaults(func=cmd_upcast)
