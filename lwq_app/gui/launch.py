"""How the app is started, without Qt: its options and whether a window can be shown.

The CLI (``lwq gui``), ``python -m lwq_app`` and ``make run`` read this module before
anything decides to create a ``QApplication``: on Linux a ``QApplication`` without a display
aborts the process, so the display check has to come first and has to be Qt-free.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: the size of every tour screenshot (and so of the window in tour mode)
TOUR_SIZE = (1440, 900)
NO_DISPLAY = "no display: running the headless demo instead (set DISPLAY to open the window)"


@dataclass(frozen=True)
class LaunchOptions:
    """What the window is asked to do once it is shown."""

    path: Path | None = None  # a model or project folder to open after the first paint
    tour: Path | None = None  # drive every step, save NN-step.png there, exit
    quick: bool = False  # the quick profile (2 imatrix chunks, row-sampled sensitivity)
    demo: bool = False  # open the demo model and start its importance collection


def has_display() -> bool:
    """Whether a user can see a window: an X or Wayland display is set, or the system always
    has one (macOS, Windows)."""
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def add_arguments(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    """The app's options, shared by ``lwq gui`` and ``python -m lwq_app``."""
    p.add_argument(
        "path",
        nargs="?",
        metavar="MODEL.gguf | PROJECT",
        help="a GGUF model (or the first file of a split one) or a project folder to open",
    )
    p.add_argument(
        "--tour",
        metavar="DIR",
        help="drive every step as a user would (with the quick profile), save one 1440x900 "
        "NN-step.png per step into DIR and exit (0, or non-zero naming the step that failed)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a quick profile for smoke tests: 2 imatrix chunks, row-sampled sensitivity",
    )
    if demo:
        p.add_argument(
            "--demo",
            action="store_true",
            help="open the demo model (SmolLM2-135M from PyPI) and collect its importance",
        )


def options_from(args: argparse.Namespace) -> LaunchOptions:
    return LaunchOptions(
        path=Path(args.path) if args.path else None,
        tour=Path(args.tour) if args.tour else None,
        quick=bool(args.quick) or bool(args.tour),  # a tour always runs the quick profile
        demo=bool(getattr(args, "demo", False)),
    )


def parse_options(argv: Sequence[str] | None = None) -> LaunchOptions:
    """``python -m lwq_app``'s command line."""
    p = argparse.ArgumentParser(prog="python -m lwq_app", description="The lwq desktop app.")
    add_arguments(p, demo=True)
    return options_from(p.parse_args(sys.argv[1:] if argv is None else argv))


def prepare_environment(opts: LaunchOptions) -> str | None:
    """Choose the Qt platform before Qt loads; the reason the window cannot open, or None.

    A tour needs no screen (it renders offscreen when there is none, as CI does); an
    interactive window does."""
    if os.environ.get("QT_QPA_PLATFORM") or has_display():
        return None
    if opts.tour is not None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return None
    return (
        "no display to open the window on: set DISPLAY (or WAYLAND_DISPLAY), "
        "or QT_QPA_PLATFORM=offscreen to run without one"
    )


def headless_demo() -> int:
    """Say there is no display, then become ``python -m lwq_app.demo`` (the CLI demo)."""
    print(NO_DISPLAY, file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "lwq_app.demo"]
    if os.name == "posix":
        os.execv(sys.executable, cmd)  # replaces this process: Ctrl+C reaches the demo alone
        return 0  # not reached
    import subprocess

    return subprocess.call(cmd)
