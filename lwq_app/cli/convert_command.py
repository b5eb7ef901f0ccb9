"""``lwq convert``: a Hugging Face safetensors folder to GGUF, by llama.cpp's own converter.

The output path on stdout (``--json`` for the whole result); progress in tensors written on
stderr. ``--outtype`` is the converter's own name for ``--type``; both take any case.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.jobs.units import format_size
from .output import ProgressBar, emit_json, err

TYPES = ("F16", "BF16", "F32")


def _out_type(value: str) -> str:
    """``--type`` in any case (``f16``, ``Bf16``): upper-cased before the choices check."""
    return value.upper()


def cmd_convert(a: argparse.Namespace) -> int:
    from ..core.hub.convert import ConvertRequest, convert_model

    request = ConvertRequest(Path(a.source), a.type, Path(a.output), delete_source=a.delete_source)
    with ProgressBar() as bar:
        r = convert_model(request, progress=bar)
    err(
        f"wrote {r.output} ({r.arch}, {r.tensors} tensors, {a.type}, "
        f"{format_size(r.bytes)}, {r.seconds:.1f}s)"
    )
    if a.delete_source:
        err(f"deleted {a.source} from the Hugging Face cache ({format_size(r.freed_bytes)} freed)")
    if a.json:
        emit_json(
            {
                "output": str(r.output),
                "arch": r.arch,
                "hf_architecture": r.hf_architecture,
                "type": a.type,
                "tensors": r.tensors,
                "bytes": r.bytes,
                "seconds": round(r.seconds, 2),
                "freed_bytes": r.freed_bytes,
            }
        )
    else:
        print(r.output)
    return 0


def register(sub: Any) -> None:
    """Add ``convert``."""
    p = sub.add_parser(
        "convert",
        help="convert a Hugging Face safetensors folder to GGUF (F16/BF16/F32)",
        description=(
            "Convert a Hugging Face model folder (config.json, model*.safetensors, tokenizer "
            "files) to a GGUF with llama.cpp's own convert_hf_to_gguf.py at the commit "
            "llama-cpp-python 0.3.36 pins. Nothing is written under the output name unless "
            "the conversion succeeds."
        ),
    )
    p.add_argument("source", metavar="DIR", help="the model folder (e.g. from `lwq hub download`)")
    p.add_argument(
        "--type",
        "--outtype",
        dest="type",
        type=_out_type,
        default="F16",
        choices=TYPES,
        help="tensor type of the GGUF (default F16; 1-D tensors stay F32)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf", help="output file")
    p.add_argument(
        "--delete-source",
        action="store_true",
        help="once converted, delete DIR (a snapshot `lwq hub download` put in the Hugging "
        "Face cache) and the blobs only it uses",
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_convert)
