"""The child-process runner: results, errors, native crashes and cancel."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest

from lwq_app.core.jobs.child_runner import run_in_child
from lwq_app.core.jobs.errors import Cancelled, JobFailed, PlanError
from lwq_app.core.jobs.progress import CancelToken, Progress


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


@pytest.mark.skipif(os.name != "posix", reason="RUSAGE_THREAD and select on a pipe: POSIX")
def test_parent_sleeps_until_something_happens() -> None:
    """No timer in the parent: each wake-up would preempt a compute thread of the child.
    A 10 Hz poll made ~20 voluntary context switches in 2 s; blocking makes a handful."""
    import resource

    token = CancelToken()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    run_in_child("childjobs:quiet", {"seconds": 2.0}, cancel=token)
    assert resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before < 10


@pytest.mark.skipif(not CancelToken.waitable, reason="no cancel descriptor on this platform")
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


def test_cancel_without_a_descriptor_polls_and_still_cancels_within_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The branch Windows takes: no descriptor to ``select`` on, the parent polls the flag
    every POLL_INTERVAL."""
    from lwq_app.core.jobs import child_runner
    from lwq_app.core.jobs.progress import POLL_INTERVAL

    monkeypatch.setattr(CancelToken, "waitable", False)
    token = CancelToken()
    assert token.wait_fd() is None
    waits: list[float | None] = []
    real_wait = child_runner.mp_connection.wait

    def spy(sources: list[object], timeout: float | None = None) -> list[object]:
        if len(sources) > 1:  # the runner's own wait (Connection.poll waits on itself alone)
            waits.append(timeout)
        return real_wait(sources, timeout)  # type: ignore[no-any-return]

    monkeypatch.setattr(child_runner.mp_connection, "wait", spy)
    cancelled_at: list[float] = []

    def cancel_soon(p: Progress) -> None:
        def go() -> None:
            cancelled_at.append(time.monotonic())
            token.cancel()

        threading.Timer(0.3, go).start()

    pids: list[int] = []
    with pytest.raises(Cancelled):
        run_in_child("childjobs:forever", {}, progress=cancel_soon, cancel=token,
                     on_start=pids.append)  # fmt: skip
    assert time.monotonic() - cancelled_at[0] < 1.0
    assert waits and all(t == POLL_INTERVAL for t in waits)
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() in (
        psutil.STATUS_ZOMBIE,
        psutil.STATUS_DEAD,
    )


@pytest.mark.skipif(not hasattr(os, "nice"), reason="POSIX niceness")
def test_children_run_as_much_nicer_as_the_app_asks() -> None:
    from lwq_app.core.jobs import child_runner

    mine = os.nice(0)
    assert run_in_child("childjobs:niceness", {}) == mine  # the CLI: the same priority
    child_runner.set_child_niceness(3)
    try:
        assert run_in_child("childjobs:niceness", {}) == min(mine + 3, 19)
    finally:
        child_runner.set_child_niceness(0)
