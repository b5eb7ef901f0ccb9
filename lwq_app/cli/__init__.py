"""The ``lwq`` command: ``main`` parses the arguments, builds a core request, runs the job and
renders its result. One module per command group; ``output`` holds what they share."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
