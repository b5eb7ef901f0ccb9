"""The ``lwq`` command line: a thin layer over the core jobs.

One grammar for every command: ``-o OUT``, ``--threads N``, ``--gpu-layers N``, ``--json``
(machine-readable result on stdout; everything else on stderr), ``-f TEXT`` for text input,
sizes with explicit units. Errors print one line naming the file/tensor/option and exit
non-zero (1: bad input or failed job, 2: usage, 130: cancelled). Anything unexpected (a bug)
is one line too, pointing at a log file with the traceback; never a traceback on the terminal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..core.jobs.errors import Cancelled, LwqError, one_line
from . import (
    calibrate_command,
    data_commands,
    eval_commands,
    gui_command,
    hub_commands,
    importance_commands,
    model_commands,
    plan_commands,
)
from .output import check_common_args, err


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="lwq", description="Layer-wise quantization of LLMs through llama.cpp."
    )
    ap.add_argument("--version", action="version", version=f"lwq {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # registration order = the order of `lwq --help`
    for group in (
        gui_command,
        model_commands,
        plan_commands,
        importance_commands,
        calibrate_command,
        eval_commands,
        data_commands,
        hub_commands,
    ):
        group.register(sub)
    return ap


#: options whose value may start with "-" (``--target-size -1GB``): argparse would take the
#: value for an option and print a usage error naming neither; glued (``--target-size=-1GB``)
#: the value reaches the one check that names the option
_SIGNED_VALUES = frozenset(
    {"--target-size", "--target-data-size", "--target-memory", "--target-bpw"}
)


def _glue_signed_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if a in _SIGNED_VALUES and nxt is not None and nxt[:1] == "-" and nxt[:2] != "--":
            out.append(f"{a}={nxt}")
            next(it, None)
        else:
            out.append(a)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_glue_signed_values(sys.argv[1:] if argv is None else argv))
    try:
        check_common_args(args)
        return int(args.func(args))
    except Cancelled:
        err("lwq: cancelled; nothing was written")
        return 130
    except KeyboardInterrupt:
        err("lwq: interrupted; nothing was written")
        return 130
    except LwqError as e:
        err(f"lwq: error: {one_line(str(e))}")
        return 1
    except Exception as e:  # the one place a bug reaches the user: one line and a log file
        err(_internal(args, e))
        return 1


def _internal(args: argparse.Namespace, e: BaseException) -> str:
    import traceback

    from ..core.jobs.boundary import describe, write_log

    command = getattr(args, "command", "?")
    log = write_log(f"lwq {command}: internal error\n" + "".join(traceback.format_exception(e)))
    where = f"the traceback is in {log}" if log is not None else "no log file could be written"
    return one_line(f"lwq: internal error in {command} ({describe(e)}): a bug in lwq; {where}")
