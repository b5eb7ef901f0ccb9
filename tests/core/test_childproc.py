"""The child-process runner: results, errors, native crashes and cancel."""

from __future__ import annotations

import os
import resource
import threading
import time

import psutil
import pytest

from lwq_app.core.childproc import run_in_child
from lwq_app.core.errors import Cancelled, JobFailed, PlanError
from lwq_app.core.progress import CancelToken, Progress


def test_result_and_progress() -> None:
    seen: list[Progress] = []
    pid = run_in_child("childjobs:count", {"n": 5}, progress=seen.append)
    assert pid != os.getpid()
    assert [p.done for p in seen] == [1, 2, 3, 4, 5]


def test_native_crash_becomes_an_error() -> None:
    with pytest.raises(JobFailed, match="crashed \\(SIGSEGV\\)"):
        run_in_child("childjobs:segfault", {})


def test_error_class_survives_the_process_boundary() -> None:
    with pytest.raises(PlanError, match=r"blk\.0\.attn_q\.weight"):
        run_in_child("childjobs:bad_plan", {})


def test_cancel_kills_the_child_within_a_second() -> None:
    token = CancelToken()
    pids: list[int] = []

    def on_progress(p: Progress) -> None:
        threading.Timer(0.2, token.cancel).start()

    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        run_in_child("childjobs:forever", {}, progress=on_progress, cancel=token,
                     on_start=pids.append)  # fmt: skip
    assert time.monotonic() - t0 < 30
    gone_by = time.monotonic() + 1.0
    while psutil.pid_exists(pids[0]) and time.monotonic() < gone_by:
        p = psutil.Process(pids[0])
        if p.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.02)
    assert (
        not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
    )


def test_parent_sleeps_until_something_happens() -> None:
    """No timer in the parent: each wake-up would preempt a compute thread of the child.
    A 10 Hz poll made ~20 voluntary context switches in 2 s; blocking makes a handful."""
    token = CancelToken()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    run_in_child("childjobs:quiet", {"seconds": 2.0}, cancel=token)
    assert resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before < 10


def test_cancel_token_descriptor_is_readable_once_cancelled() -> None:
    import select

    early, late = CancelToken(), CancelToken()
    fd = early.wait_fd()
    assert select.select([fd], [], [], 0)[0] == []
    early.cancel()
    early.cancel()  # twice is fine
    assert select.select([fd], [], [], 0)[0] == [fd]
    late.cancel()
    assert select.select([late.wait_fd()], [], [], 0)[0] == [late.wait_fd()]
