"""What every command shares: the progress bar, the ``--json`` and error output, the common
arguments (``-o``, ``--threads``, ``--gpu-layers``, ``--json``) and the plan-source arguments."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..core.jobs.progress import EtaEstimator, Phase, Progress


class ProgressBar:
    """A text progress bar on stderr (redrawn in place on a terminal, sparse lines otherwise).

    The bar and its percentage show the job's overall position (``Progress.position``, one
    monotone 0→1 across a composite job's phases); the line names the phase, its done/total
    and the item, and gives ONE ETA, from ``EtaEstimator`` over that position."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._clock = clock
        self._eta = EtaEstimator()
        self._last_line = ""
        self._last_pct = -100
        self._last_phase: Phase | None = None

    def __call__(self, p: Progress) -> None:
        frac = p.position
        seconds = self._eta.update(frac, self._clock())
        pct = int(frac * 100)
        new_phase = p.phase != self._last_phase or pct < self._last_pct  # or a restart
        self._last_phase = p.phase
        finished = p.done >= p.total and frac >= 1.0
        if not self.tty and not new_phase and not finished and pct - self._last_pct < 10:
            return
        self._last_pct = pct
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        eta = f" ETA {_duration(seconds)}" if seconds is not None and frac < 1 else ""
        count = f"{_number(p.done)}/{_number(p.total)}"
        line = f"{p.phase.value:>8} [{bar}] {pct:3d}% {count}{eta} {p.item[:40]}".rstrip()
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)))
            if finished:
                self.stream.write("\n")
                line = ""
        else:
            self.stream.write(line + "\n")
        self._last_line = line
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
        self._last_line = ""


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def err(msg: str) -> None:
    print(msg, file=sys.stderr)


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")


def common_args(
    p: argparse.ArgumentParser, output: bool = True, required_output: bool = False
) -> None:
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


#: the arguments several commands share, checked once for every command (the jobs check their
#: own too): attribute -> (option, check)
_SHARED: dict[str, tuple[str, Callable[[Any, str], Any]]] = {}


def _shared_checks() -> dict[str, tuple[str, Callable[[Any, str], Any]]]:
    if not _SHARED:
        from ..core.jobs import arguments as ar

        def tokens(v: Any, option: str) -> int:
            return ar.int_option(v, option, minimum=1, maximum=MAX_CONTEXT)

        def rows(v: Any, option: str) -> int:
            return ar.int_option(v, option, minimum=0, meaning="0 = all rows")

        _SHARED.update(
            threads=("--threads", ar.threads_option),
            gpu_layers=("--gpu-layers", ar.gpu_layers_option),
            ctx=("--ctx", tokens),
            context=("--context", tokens),
            max_rows=("--max-rows", rows),
        )
    return _SHARED


#: no model has a context of more than 2^24 tokens; llama.cpp's n_ctx is a uint32
MAX_CONTEXT = 2**24


def check_common_args(a: argparse.Namespace) -> None:
    """``InputError`` naming the option for a shared numeric argument out of range."""
    for attr, (option, check) in _shared_checks().items():
        value = getattr(a, attr, None)
        if value is not None:
            check(value, option)


def plan_source_args(p: argparse.ArgumentParser, from_flag: str, auto: bool = False) -> None:
    """Where a plan comes from: ``--preset``, a saved plan (``from_flag``) or, with ``auto``,
    ``--auto`` under a budget."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", metavar="NAME", help="a llama.cpp stock mix, e.g. Q4_K_M")
    g.add_argument(from_flag, dest="plan_file", metavar="PLAN.json", help="a saved lwq plan")
    if auto:
        g.add_argument("--auto", action="store_true", help="choose types under a budget")
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix (GGUF or .dat)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a requested type that does not fit a tensor's shape is an error",
    )


def opt_path(value: str | None) -> Path | None:
    """An optional path argument as a ``Path`` (None stays None)."""
    return None if value is None else Path(value)
