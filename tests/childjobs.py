"""Functions the child-process runner tests start in a child (importable by module path)."""

from __future__ import annotations

import ctypes
import os
import time

from lwq_app.core.jobs.child_runner import ChildContext
from lwq_app.core.jobs.errors import PlanError
from lwq_app.core.jobs.progress import Phase, Progress


def count(ctx: ChildContext, *, n: int) -> int:
    for i in range(n):
        ctx.progress(Progress(Phase.EVAL, i + 1, n, f"step {i + 1}"))
    return os.getpid()


def segfault(ctx: ChildContext) -> None:
    ctx.progress(Progress(Phase.EVAL, 0, 1, "about to crash"))
    ctypes.string_at(0)  # a native crash, as a bad llama.cpp call would be


def bad_plan(ctx: ChildContext) -> None:
    raise PlanError("tensor blk.0.attn_q.weight: bad")


def forever(ctx: ChildContext) -> None:
    ctx.progress(Progress(Phase.EVAL, 0, 1, "working"))
    while True:
        time.sleep(0.01)


def quiet(ctx: ChildContext, *, seconds: float) -> int:
    """Works without a word for ``seconds``, then answers."""
    time.sleep(seconds)
    return os.getpid()
