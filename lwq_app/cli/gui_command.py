"""``lwq gui``: open the desktop app (Qt loads only when this command runs).

The options are the app's own (``lwq_app.gui.launch``, Qt-free), so ``lwq gui`` and
``python -m lwq_app`` read the same command line.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..gui.launch import add_arguments, options_from


def cmd_gui(a: argparse.Namespace) -> int:
    from ..gui.app import run

    return run(options_from(a))


def register(sub: Any) -> None:
    """Add ``lwq gui`` to the ``lwq`` sub-command parser."""
    p = sub.add_parser(
        "gui",
        help="open the desktop app (optionally on a model or project)",
        description="Open the lwq desktop app, optionally on a GGUF model or a project folder.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_gui)
