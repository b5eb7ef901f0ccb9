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


def native_abort(ctx: ChildContext) -> None:
    """Dies as llama.cpp does on a GGML_ASSERT: the assert line, a debugger's noise, SIGABRT."""
    ctx.progress(Progress(Phase.QUANTIZE, 3, 9, "blk.3.ffn_up.weight"))
    os.write(2, b"/src/ggml/src/ggml-quants.c:3462: GGML_ASSERT(grid_index >= 0) failed\n")
    os.write(2, b"[New LWP 4242]\n#0  0x00007f0000000000 in __GI___wait4 ()\n")
    os.write(2, b"#1  0x00007f0000000001 in ggml_print_backtrace ()\n[Inferior 1 detached]\n")
    os.abort()


def python_bug(ctx: ChildContext) -> None:
    """A bug in lwq's own code running in the child (not an LwqError)."""
    ctx.progress(Progress(Phase.EVAL, 0, 1, "chunk 1"))
    _ = {}["missing key"]


def niceness(ctx: ChildContext) -> int:
    """The child's own niceness."""
    import os

    return os.nice(0)
