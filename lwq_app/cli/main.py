"""The ``lwq`` command line: a thin layer over the core jobs.

One grammar for every command: ``-o OUT``, ``--threads N``, ``--gpu-layers N``, ``--json``
(machine-readable result on stdout; everything else on stderr), ``-f TEXT`` for text input,
sizes with explicit units. Errors print one line naming the file/tensor and exit non-zero
(1: bad input or failed job, 2: usage, 130: cancelled).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__
from ..core.jobs.errors import Cancelled, LwqError
from . import (
    calibrate_command,
    data_commands,
    eval_commands,
    importance_commands,
    model_commands,
    plan_commands,
)
from .output import err


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lwq", description="Layer-wise quantization of LLMs through llama.cpp."
    )
    ap.add_argument("--version", action="version", version=f"lwq {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # registration order = the order of `lwq --help`
    for group in (
        model_commands,
        plan_commands,
        importance_commands,
        calibrate_command,
        eval_commands,
        data_commands,
    ):
        group.register(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Cancelled:
        err("lwq: cancelled; nothing was written")
        return 130
    except KeyboardInterrupt:
        err("lwq: interrupted; nothing was written")
        return 130
    except LwqError as e:
        err(f"lwq: error: {e}")
        return 1
