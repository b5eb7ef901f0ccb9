"""The run queue's core: its transitions, the job journal (round trip, interrupted entries and
their half-written files), a failing step skipping its chain, ``run_entry`` of every kind on
the real SmolLM2 with the results store holding what it returned, and a child process dying
with its killed parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

import fixtures
from lwq_app.core.evaluate import KldResult, TaskResult
from lwq_app.core.jobs import InputError, OutputError, run_in_child, temp_path_for
from lwq_app.core.jobs.resources import WIKITEXT_EXCERPT
from lwq_app.core.modelfile import open_model
from lwq_app.core.plan import plan_from_preset
from lwq_app.core.plan.quantize import sidecar_path
from lwq_app.core.results import load_results
from lwq_app.core.results import run_queue as rq
from lwq_app.core.results.eval_settings import EvalSettings, TaskSetting
from lwq_app.core.results.journal import (
    journal_path,
    load_journal,
    recover_journal,
    save_journal,
)
from lwq_app.core.results.run_entry import run_entry
from lwq_app.core.results.run_queue import JobKind

TESTS = Path(__file__).resolve().parents[1]


def small_settings(tasks: tuple[TaskSetting, ...] = ()) -> EvalSettings:
    """2 chunks of 128 tokens, 20 tasks, bench -r 1 -p 64 -n 16, one thread (2 busy cores)."""
    return EvalSettings(
        text=WIKITEXT_EXCERPT, n_ctx=128, n_chunks=2, tasks=tasks, task_ctx=256,
        bench_tests=((64, 0), (0, 16)), bench_repetitions=1, threads=1,
    )  # fmt: skip


def write_hellaswag(path: Path, n: int = 20, seed: int = 1) -> Path:
    return fixtures.write_hellaswag(path, n, seed)


def chain(folder: Path, n_tasks: int = 1) -> tuple[rq.QueueEntry, ...]:
    """A chain like Quantize & check's (eval → tasks… → bench), without needing a plan."""
    s = small_settings(tuple(TaskSetting("hellaswag", folder / f"t{i}.txt") for i in range(1)))
    model = folder / "m.gguf"
    steps = [rq.eval_entry(model, folder / "base.gguf", s)]
    steps += [rq.task_entry(model, "hellaswag", s) for _ in range(n_tasks)]
    steps.append(rq.bench_entry(model, s))
    return rq.chained(steps)


def states(entries: tuple[rq.QueueEntry, ...]) -> list[str]:
    return [e.state.value for e in entries]


# --- transitions ----------------------------------------------------------------------------


def test_runnable_follows_chains_and_the_parallel_count(tmp_path: Path) -> None:
    a, b = chain(tmp_path), chain(tmp_path)
    q = a + b
    assert rq.runnable(q) == (a[0],)  # one at a time; a chain's later steps wait
    assert rq.runnable(q, max_parallel=2) == (a[0], b[0])
    q = rq.mark_running(q, a[0].id)
    assert rq.runnable(q) == () and rq.runnable(q, 2) == (b[0],)
    q = rq.mark_done(q, a[0].id, "PPL 1")
    assert rq.next_runnable(q) == rq.find(q, a[1].id)
    assert rq.find(q, a[0].id).message == "PPL 1" and rq.find(q, a[0].id).ended is not None
    with pytest.raises(InputError, match="not queued"):
        rq.mark_running(q, a[0].id)


def test_a_failed_or_cancelled_step_skips_the_rest_of_its_chain(tmp_path: Path) -> None:
    a, b = chain(tmp_path, n_tasks=2), chain(tmp_path)
    q = rq.mark_running(a + b, a[0].id)
    q = rq.mark_failed(q, a[0].id, "m.gguf: not a GGUF file")
    assert states(q[: len(a)]) == ["failed", "skipped", "skipped", "skipped"]
    assert all("failed" in e.error for e in q[1 : len(a)])
    assert rq.next_runnable(q) == b[0]  # the other chain goes on
    q = rq.mark_cancelled(q, b[1].id)  # a queued step, cancelled before it ran
    assert states(q[len(a) :]) == ["queued", "cancelled", "skipped"]
    assert rq.mark_cancelled(q, b[1].id) == q  # an ended entry stays as it is


def test_requeue_brings_back_what_it_needs_and_what_waits(tmp_path: Path) -> None:
    a = chain(tmp_path, n_tasks=2)
    q = rq.mark_done(rq.mark_running(a, a[0].id), a[0].id)
    q = rq.mark_running(q, a[1].id)
    q = rq.mark_interrupted(q)
    assert states(q) == ["done", "interrupted", "skipped", "skipped"]
    again = rq.requeued(q, a[3].id)  # the last step: its predecessors back to the DONE one
    assert states(again) == ["done", "queued", "queued", "queued"]
    assert all(e.error == "" and e.started is None for e in again[1:])
    assert rq.requeued(q, a[1].id) == again  # the interrupted one: with what waits for it
    with pytest.raises(InputError, match="done"):
        rq.requeued(q, a[0].id)


def test_move_remove_and_clear(tmp_path: Path) -> None:
    a, b = chain(tmp_path), chain(tmp_path)
    q = rq.mark_done(rq.mark_running(a + b, a[0].id), a[0].id)
    ids = [e.id for e in q]
    moved = rq.moved(q, b[0].id, -10)  # to the top of the queued ones; DONE stays put
    assert [e.id for e in moved] == [ids[0], ids[3], ids[1], ids[2], ids[4], ids[5]]
    assert rq.moved(moved, b[0].id, 2) == q
    with pytest.raises(InputError, match="only queued jobs move"):
        rq.moved(q, a[0].id, 1)
    # a queued step goes with the steps waiting for it; a DONE one leaves them
    assert [e.id for e in rq.removed(q, b[1].id)] == ids[:4]
    assert [e.id for e in rq.removed(q, a[0].id)] == ids[1:]
    with pytest.raises(InputError, match="cancel it first"):
        rq.removed(rq.mark_running(q, b[0].id), b[0].id)
    # clearing keeps a chain with work left; an ended chain goes
    failed = rq.mark_failed(rq.mark_running(q, b[0].id), b[0].id, "x")
    assert [e.id for e in rq.cleared(failed)] == ids[:3]


def test_quantize_and_check_is_one_chain(smollm2: Path, tmp_path: Path) -> None:
    model = open_model(smollm2)
    plan = plan_from_preset(model, "Q4_0")
    tasks = (TaskSetting("hellaswag", tmp_path / "h.txt", 20),)
    q = rq.quantize_and_check_entries(
        plan, "p", tmp_path / "o.gguf", None, smollm2, small_settings(tasks)
    )
    assert [e.kind for e in q] == [JobKind.QUANTIZE, JobKind.EVAL, JobKind.TASKS, JobKind.BENCH]
    assert len({e.chain for e in q}) == 1 and q[0].after is None
    assert [e.after for e in q[1:]] == [e.id for e in q[:-1]]
    assert all(e.model == tmp_path / "o.gguf" for e in q[1:]) and q[0].model == smollm2
    assert q[1].spec["base"] == str(smollm2)
    json.dumps([e.to_json() for e in q])  # the journal can hold it


# --- the journal --------------------------------------------------------------------------------


def test_journal_round_trip_and_damage(smollm2: Path, tmp_path: Path) -> None:
    plan = plan_from_preset(open_model(smollm2), "Q4_0")
    q = rq.quantize_and_check_entries(
        plan, None, tmp_path / "o.gguf", None, smollm2, small_settings()
    )
    q = rq.mark_failed(rq.mark_running(q, q[0].id), q[0].id, "boom")
    assert load_journal(tmp_path) == ()
    save_journal(tmp_path, q)
    assert load_journal(tmp_path) == q
    p = journal_path(tmp_path)
    p.write_text("{")
    with pytest.raises(InputError, match=r"jobs\.json: unreadable"):
        load_journal(tmp_path)
    data = {"format": "lwq-jobs", "version": 1, "entries": [q[0].to_json() | {"state": "odd"}]}
    p.write_text(json.dumps(data))
    with pytest.raises(InputError, match="item 1: unknown kind"):
        load_journal(tmp_path)


def test_recovery_marks_running_interrupted_and_removes_half_written_files(
    smollm2: Path, tmp_path: Path
) -> None:
    plan = plan_from_preset(open_model(smollm2), "Q4_0")
    out = tmp_path / "out.gguf"
    q = rq.quantize_and_check_entries(plan, None, out, None, smollm2, small_settings())
    q = rq.mark_running(q, q[0].id)
    save_journal(tmp_path, q)
    tmp = temp_path_for(out)  # as atomic_output leaves it when the process dies
    tmp.write_bytes(b"GGUF half")
    side_tmp = temp_path_for(sidecar_path(out))
    sidecar_path(out).write_text("{}")  # written just before the rename that never came
    other = temp_path_for(tmp_path / "other.gguf")  # another file's: kept
    rec = recover_journal(tmp_path)
    assert [e.id for e in rec.interrupted] == [q[0].id]
    assert states(rec.entries) == ["interrupted", "skipped", "skipped"]
    assert set(rec.removed) == {tmp, side_tmp, sidecar_path(out)}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["jobs.json", other.name])
    assert load_journal(tmp_path) == rec.entries  # written back: found once
    assert recover_journal(tmp_path).interrupted == ()


# --- run_entry on SmolLM2 ------------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LWQ_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.slow
def test_run_entry_runs_and_records_every_kind(smollm2: Path, folders: Path) -> None:
    tasks = (TaskSetting("hellaswag", write_hellaswag(folders / "hs.txt"), 20),)
    settings = small_settings(tasks)
    plan = plan_from_preset(open_model(smollm2), "Q4_0")
    out = folders / "smol-q4_0.gguf"
    q = rq.quantize_and_check_entries(plan, "stock", out, None, smollm2, settings)
    events: dict[JobKind, list[object]] = {}
    results = []
    for e in q:
        results.append(run_entry(e, progress=events.setdefault(e.kind, []).append))
    assert all(events[k] for k in JobKind)
    quantized, kld, task, speed = results
    assert quantized.quantized is not None and quantized.model == out and out.is_file()
    v = quantized.variant()
    assert v is not None and v.path == out and v.plan_name == "stock"
    assert v.plan_sha256 == plan.content_hash() and v.file_bytes == out.stat().st_size
    assert isinstance(kld.measured, KldResult) and kld.measured.perplexity.n_chunks == 2
    assert isinstance(task.measured, TaskResult) and task.measured.n_tasks == 20
    assert [r.test_name for r in speed.measured.records] == ["pp64", "tg16"]
    stored = load_results(out)
    assert [r.result for r in stored.evals] == [kld.measured]
    assert stored.tasks[0].result.score == task.measured.score
    assert [r.record for r in stored.bench] == list(speed.measured.records)
    assert kld.results_file == stored.path and "KLD" in kld.summary and "tg16" in speed.summary


def test_failures_name_the_file(smollm2: Path, folders: Path) -> None:
    settings = small_settings((TaskSetting("hellaswag", folders / "missing.txt", 20),))
    bad = folders / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    plan = plan_from_preset(open_model(smollm2), "Q4_0")
    cases = [
        (rq.quantize_entry(smollm2, plan, None, folders / "no" / "o.gguf", None), OutputError),
        (rq.eval_entry(bad, None, settings), "bad.gguf"),
        (rq.eval_entry(smollm2, folders / "gone-f16.gguf", settings), "gone-f16.gguf"),
        (rq.task_entry(smollm2, "hellaswag", settings), "missing.txt"),
    ]
    for entry, named in cases:
        with pytest.raises(Exception) as info:  # each case checks its own
            run_entry(entry)
        if isinstance(named, str):
            assert named in str(info.value), info.value
        else:
            assert isinstance(info.value, named)
    spec = dict(cases[0][0].spec, plan={"format": "nope"})
    with pytest.raises(Exception, match="plan"):
        run_entry(replace(cases[0][0], spec=spec))


# --- the child process runner -------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_its_killed_parent(tmp_path: Path) -> None:
    script, said = tmp_path / "parent.py", tmp_path / "child.pid"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(TESTS)!r})
        from lwq_app.core.jobs import run_in_child

        if __name__ == "__main__":
            pid = []
            def running(_p):  # the child runs the job (past its start-up): say its pid
                Path({str(said)!r}).write_text(str(pid[0]))
            run_in_child("childjobs:forever", {{}}, on_start=pid.append, progress=running)
    """)
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 60
        while not (said.exists() and said.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(said.read_text())
        assert psutil.pid_exists(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)

        def gone() -> bool:
            try:
                return psutil.Process(child).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
            except psutil.NoSuchProcess:
                return True

        deadline = time.monotonic() + 5
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not gone():
            os.kill(child, signal.SIGKILL)
            pytest.fail("the child outlived its SIGKILLed parent")
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.skipif(not hasattr(os, "nice"), reason="POSIX niceness")
def test_niceness_per_call() -> None:
    from lwq_app.core.jobs import child_runner

    mine = os.nice(0)
    child_runner.set_child_niceness(3)
    try:
        assert run_in_child("childjobs:niceness", {}) == min(mine + 3, 19)
        assert run_in_child("childjobs:niceness", {}, niceness=0) == mine
        assert run_in_child("childjobs:niceness", {}, niceness=1) == min(mine + 1, 19)
    finally:
        child_runner.set_child_niceness(0)
