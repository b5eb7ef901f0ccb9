"""The Run step on the real window, SmolLM2 and llama.cpp, with small counts (2 chunks of 128
tokens, 20 HellaSwag tasks from a file the test writes, bench -r 1 -p 64 -n 16).

Quantize & check from the Plan page → every step DONE, the variant recorded and the store
holding each record → Cancel after the first progress event of each kind of job leaves no
file and a responsive window → an app SIGKILLed mid-quantize leaves no file under the final
name, and the next window shows the job INTERRUPTED → a corrupted variant, a missing base, an
unreadable task file and an unwritable output each fail in their own row while the queue goes
on.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from heartbeat import Heartbeat
from PySide6.QtWidgets import QPlainTextEdit

import fixtures
from lwq_app.core.jobs.resources import WIKITEXT_EXCERPT
from lwq_app.core.results import load_results
from lwq_app.core.results import run_queue as rq
from lwq_app.core.results.eval_settings import EvalSettings, TaskSetting
from lwq_app.core.results.journal import load_journal
from lwq_app.core.results.run_queue import JobKind, JobState
from lwq_app.gui.context import Step
from lwq_app.gui.main_window import MainWindow
from lwq_app.gui.views.run_view import RunView

OPEN_TIMEOUT = 120_000
RUN_TIMEOUT = 300_000
MAX_GAP_MS = 500
TMP = ".lwq-tmp"


def write_hellaswag(path: Path, n: int = 20, seed: int = 3) -> Path:
    return fixtures.write_hellaswag(path, n, seed)


def small_settings(task_file: Path | None) -> EvalSettings:
    tasks = () if task_file is None else (TaskSetting("hellaswag", task_file, 20),)
    return EvalSettings(
        text=WIKITEXT_EXCERPT, n_ctx=128, n_chunks=2, tasks=tasks, task_ctx=256,
        bench_tests=((64, 0), (0, 16)), bench_repetitions=1, threads=1,
    )  # fmt: skip


def linked(model: Path, folder: Path) -> Path:
    """The shared model fixture under ``folder`` (a hard link where possible), so results
    stored beside it land in the test's folder, not the fixture cache."""
    out = folder / model.name
    try:
        os.link(model, out)
    except OSError:
        shutil.copyfile(model, out)
    return out


def temp_files(*folders: Path) -> list[Path]:
    return [p for f in folders for p in f.rglob(f"*{TMP}")]


@pytest.fixture
def data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("LWQ_DATA_DIR", str(folder))
    monkeypatch.setenv("LWQ_CACHE_DIR", str(tmp_path / "cache"))
    return folder


def open_model(qtbot, w: MainWindow, model: Path) -> None:
    with qtbot.waitSignal(w.ctx.session.opened, timeout=OPEN_TIMEOUT):
        w.open_path(model)
    qtbot.waitUntil(lambda: not w.ctx.queue._loading, timeout=10_000)


def window_with_work(
    qtbot, window_factory: Callable[..., Any], smollm2: Path, tmp_path: Path
) -> tuple[MainWindow, Path, Path]:
    """A window with SmolLM2 open, a work folder and the model linked into it."""
    w = window_factory(quick=True)
    open_model(qtbot, w, smollm2)
    work = tmp_path / "work"
    work.mkdir()
    return w, work, linked(smollm2, work)


def ended(w: MainWindow) -> bool:
    entries = w.ctx.queue.entries
    return bool(entries) and all(e.state in rq.ENDED for e in entries)


def run_page(w: MainWindow) -> RunView:
    page = w.page(Step.RUN)
    assert isinstance(page, RunView)
    return page


@pytest.mark.slow
def test_quantize_and_check_from_the_plan_page(
    qtbot, data: Path, window_factory: Callable[..., Any], smollm2: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    w = window_factory(quick=True)
    open_model(qtbot, w, smollm2)
    s = w.ctx.session
    s.update(eval_settings=small_settings(write_hellaswag(tmp_path / "hs.txt")))
    plan_page = w.page(Step.PLAN)
    plan = plan_page.editor.plan
    out_dir = tmp_path / "variants"
    out_dir.mkdir()

    from lwq_app.gui.views.quantize_dialog import QuantizeDialog

    def accept(dialog: QuantizeDialog) -> int:  # the user keeps the name, picks a folder
        dialog.folder.setText(str(out_dir))
        return 1

    monkeypatch.setattr(QuantizeDialog, "exec", accept)
    queue = w.ctx.queue
    changed: list[Path] = []
    queue.results_changed.connect(changed.append)
    with qtbot.waitSignal(queue.variants_changed, timeout=RUN_TIMEOUT):
        plan_page.check_button.click()
        assert w.current_step() is Step.RUN
        kinds = [e.kind for e in queue.entries]
        assert kinds == [JobKind.QUANTIZE, JobKind.EVAL, JobKind.TASKS, JobKind.BENCH]
    qtbot.waitUntil(lambda: ended(w), timeout=RUN_TIMEOUT)
    entries = queue.entries
    page = run_page(w)
    assert [e.state for e in entries] == [JobState.DONE] * 4, [e.error for e in entries]
    assert [page.row(e.id).state.text() for e in entries] == ["done"] * 4
    out = entries[0].output
    assert out is not None and out.parent == out_dir and out.is_file()
    variants = s.state.variants
    assert [v.path for v in variants] == [out] and variants[0].plan_name == plan_page.editor.name
    assert variants[0].plan_sha256 == plan.content_hash()
    assert changed == [out, out, out]
    stored = load_results(out)
    kld = stored.evals[0].result
    assert kld.perplexity.n_chunks == 2 and stored.tasks[0].result.n_tasks == 20
    assert [r.record.test_name for r in stored.bench] == ["pp64", "tg16"]
    assert page.row(entries[1].id).line.text() == entries[1].message and "KLD" in entries[1].message
    assert [e.state for e in load_journal(s.folder)] == [JobState.DONE] * 4
    assert page.is_done() and w.sidebar.done[Step.RUN]
    assert temp_files(out_dir) == []


@pytest.mark.slow
def test_cancel_each_kind_leaves_nothing_and_the_window_responsive(
    qtbot, data: Path, window_factory: Callable[..., Any], smollm2: Path, tmp_path: Path
) -> None:
    w, work, model = window_with_work(qtbot, window_factory, smollm2, tmp_path)
    settings = small_settings(write_hellaswag(work / "hs.txt"))
    plan = w.page(Step.PLAN).editor.plan
    out = work / "cancelled.gguf"
    entries = [
        rq.quantize_entry(smollm2, plan, None, out, None),
        rq.eval_entry(model, smollm2, settings),
        rq.task_entry(model, "hellaswag", settings),
        rq.bench_entry(model, settings),
    ]
    queue = w.ctx.queue
    page = run_page(w)
    w.go_to(Step.RUN)
    with Heartbeat() as hb:
        queue.add(entries)
        for e in entries:

            def started(e: rq.QueueEntry = e) -> bool:
                job = queue.job_for(e.id)
                return job is not None and job.progress is not None

            qtbot.waitUntil(started, timeout=RUN_TIMEOUT)
            page.row(e.id).cancel.click()  # the row's own Cancel
            qtbot.waitUntil(lambda e=e: queue.entry(e.id).state is JobState.CANCELLED,
                            timeout=30_000)  # fmt: skip
        qtbot.waitUntil(lambda: ended(w), timeout=30_000)
    assert hb.max_gap_ms < MAX_GAP_MS, hb.summary()
    assert [e.state for e in queue.entries] == [JobState.CANCELLED] * 4
    assert not out.exists() and temp_files(work, w.ctx.session.folder, tmp_path / "cache") == []
    assert not load_results(model).path.exists()  # nothing was stored
    assert w.ctx.session.state.variants == ()
    assert not queue.paused  # the user's Cancel: the queue went on to the next job
    assert page.row(entries[0].id).requeue.isVisibleTo(page)
    assert [e.state for e in load_journal(w.ctx.session.folder)] == [JobState.CANCELLED] * 4
    page.parallel.setValue(3)  # the "jobs at once" setting is the controller's, kept
    assert queue.max_parallel == 3 and int(w.ctx.settings.value("run/max_parallel")) == 3


KILLED_APP = """
import os, sys
from pathlib import Path

if __name__ == "__main__":
    from PySide6.QtCore import QSettings
    from lwq_app.core.jobs import Phase
    from lwq_app.gui.app import build_context, make_application
    from lwq_app.gui.context import Step
    from lwq_app.gui.main_window import MainWindow

    model, out, ini = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    app = make_application()
    ctx = build_context(QSettings(ini, QSettings.Format.IniFormat))
    window = MainWindow(ctx, restore_layout=False)
    said = []

    def progressed(job):
        p = job.progress
        if not said and p.phase is Phase.QUANTIZE and p.fraction > 0.1:
            said.append(1)
            print("QUANTIZING", flush=True)

    def opened():
        ctx.runner.job_progressed.connect(progressed)
        window.page(Step.PLAN).plan_actions.quantize_and_check(out)

    ctx.session.opened.connect(opened)
    window.open_path(model)
    app.exec()
"""


def _writers(path: Path) -> list[int]:
    """Processes that have ``path`` open."""
    pids = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if any(f.path == str(path) for f in proc.open_files()):
                pids.append(proc.pid)
        except psutil.Error:
            continue
    return pids


@pytest.mark.slow
def test_sigkill_mid_quantize_shows_interrupted_and_no_file(
    qtbot, data: Path, window_factory: Callable[..., Any], smollm2: Path, tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(KILLED_APP))
    out = tmp_path / "variants" / "killed.gguf"
    out.parent.mkdir()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    app = subprocess.Popen(
        [sys.executable, str(script), str(smollm2), str(out), str(tmp_path / "app.ini")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        assert app.stdout is not None
        deadline = time.monotonic() + RUN_TIMEOUT / 1000
        said = b""
        while b"QUANTIZING" not in said:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([app.stdout], [], [], max(0.0, left))
            chunk = os.read(app.stdout.fileno(), 4096) if ready else b""
            assert chunk, "the app ended or did not start quantizing"
            said += chunk
        half = temp_files(out.parent)
        assert half, "the quantize was writing its temp file"
        os.kill(app.pid, signal.SIGKILL)
        app.wait(10)
    finally:
        if app.poll() is None:
            app.kill()
    deadline = time.monotonic() + 5  # the quantize child dies with its parent
    while _writers(half[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _writers(half[0]) == []
    assert not out.exists()

    w = window_factory(quick=True)
    open_model(qtbot, w, smollm2)
    entries = w.ctx.queue.entries
    assert [e.kind for e in entries][:2] == [JobKind.QUANTIZE, JobKind.EVAL]
    assert entries[0].state is JobState.INTERRUPTED
    assert {e.state for e in entries[1:]} == {JobState.SKIPPED}
    assert not out.exists() and temp_files(out.parent) == []
    row = run_page(w).row(entries[0].id)
    assert row.state.text() == "interrupted" and row.requeue.isVisibleTo(row)
    assert any("interrupted" in t for t in w.message_bar.texts())
    journal = json.loads((w.ctx.session.folder / "jobs.json").read_text())
    assert journal["entries"][0]["state"] == "interrupted"


@pytest.mark.slow
def test_failures_stay_in_their_rows_and_the_queue_goes_on(
    qtbot, data: Path, window_factory: Callable[..., Any], smollm2: Path, tmp_path: Path
) -> None:
    w, work, model = window_with_work(qtbot, window_factory, smollm2, tmp_path)
    bad_tasks = work / "broken-hellaswag.txt"
    bad_tasks.write_text("context\nnot a number\na\nb\nc\nd\n")
    settings = small_settings(bad_tasks)
    corrupted = work / "corrupted-variant.gguf"
    corrupted.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(200))
    plan = w.page(Step.PLAN).editor.plan
    chain = rq.quantize_and_check_entries(
        plan, None, work / "no-such-folder" / "x.gguf", None, smollm2, settings
    )
    entries = [
        rq.eval_entry(corrupted, smollm2, settings),
        rq.eval_entry(model, work / "missing-f16.gguf", settings),
        rq.task_entry(model, "hellaswag", settings),
        *chain,
        rq.bench_entry(model, settings),
    ]
    queue = w.ctx.queue
    queue.add(entries)
    qtbot.waitUntil(lambda: ended(w), timeout=RUN_TIMEOUT)
    got = {e.id: e for e in queue.entries}
    states = [got[e.id].state for e in entries]
    assert states == [JobState.FAILED] * 4 + [JobState.SKIPPED] * (len(chain) - 1) + [
        JobState.DONE
    ], [got[e.id].error for e in entries]
    page = run_page(w)
    for e, named in zip(entries, [corrupted.name, "missing-f16.gguf", f"{bad_tasks.name}:2",
                                  "no-such-folder"], strict=False):  # fmt: skip
        row = page.row(e.id)
        assert row.state.text() == "failed" and named in row.line.text(), row.line.text()
        assert row.requeue.isVisibleTo(row) and not row.cancel.isVisibleTo(row)
    assert "skipped" in page.row(chain[1].id).line.text()
    log = page.row(entries[0].id).show_log()  # a click on the line: the whole error
    assert corrupted.name in log.findChild(QPlainTextEdit).toPlainText()
    log.close()
    assert [r.record.test_name for r in load_results(model).bench] == ["pp64", "tg16"]
    assert len(w.ctx.notifier.messages) >= 4  # each failure also took the one error road


@pytest.mark.slow
def test_speed_test_runs_alone_and_quit_cancels_in_the_journal(
    qtbot, data: Path, window_factory: Callable[..., Any], smollm2: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import lwq_app.gui.speed_gate as gate
    from lwq_app.core.results.speed import MachineLoad

    # a busy machine, said at once (the real sample takes 0.5 s: the bench could end first)
    busy = MachineLoad(load1=3.5, n_cpus=2, other_cores=1.2, busy=True)
    monkeypatch.setattr(gate, "machine_load", lambda: busy)
    w, _work, model = window_with_work(qtbot, window_factory, smollm2, tmp_path)
    settings = small_settings(None)
    w.ctx.session.update(eval_settings=settings)
    queue = w.ctx.queue
    first, second = rq.bench_entry(model, settings), rq.bench_entry(model, settings)
    queue.add([first, second])
    qtbot.waitUntil(lambda: (j := queue.job_for(first.id)) is not None and j.progress is not None,
                    timeout=RUN_TIMEOUT)  # fmt: skip
    tested: list[float] = []
    queue.speed_tested.connect(lambda _r: tested.append(time.time()))
    queue.speed_test([model])
    qtbot.waitUntil(lambda: queue.speed_job is not None, timeout=RUN_TIMEOUT)
    # the speed test waited for the running job and starts nothing beside it
    assert queue.entry(first.id).state is JobState.DONE
    assert queue.entry(second.id).state is JobState.QUEUED and queue.job_for(second.id) is None
    assert "Speed test running" in run_page(w).status.text()
    assert any("machine is busy" in m.text for m in w.ctx.notifier.messages)
    qtbot.waitUntil(lambda: queue.entry(second.id).state is JobState.DONE, timeout=RUN_TIMEOUT)
    assert tested and queue.entry(second.id).started >= tested[0] - 0.01
    assert len(load_results(model).bench) == 2  # pp64 and tg16, the speed test's latest

    # the page's Cancel speed test stops it; the queue is not paused by that
    queue.speed_test([model])
    qtbot.waitUntil(lambda: (j := queue.speed_job) is not None and j.progress is not None,
                    timeout=RUN_TIMEOUT)  # fmt: skip
    run_page(w).cancel_speed.click()
    qtbot.waitUntil(lambda: queue.speed_job is None, timeout=30_000)
    assert not queue.paused and len(tested) == 1

    # quit while a job runs: CANCELLED in the journal, nothing started after it
    third, fourth = rq.bench_entry(model, settings), rq.bench_entry(model, settings)
    queue.add([third, fourth])
    qtbot.waitUntil(lambda: (j := queue.job_for(third.id)) is not None and j.progress is not None,
                    timeout=RUN_TIMEOUT)  # fmt: skip
    folder = w.ctx.session.folder
    w.close()
    qtbot.waitUntil(lambda: w.shutdown.done, timeout=10_000)
    journal = {e.id: e.state for e in load_journal(folder)}
    assert journal[third.id] is JobState.CANCELLED and journal[fourth.id] is JobState.QUEUED

    # the next window shows them so; the queued one waits for Resume
    again = window_factory(quick=True)
    open_model(qtbot, again, smollm2)
    q2 = again.ctx.queue
    assert q2.entry(third.id).state is JobState.CANCELLED
    assert q2.entry(fourth.id).state is JobState.QUEUED and q2.paused
    assert run_page(again).resume_button.isVisibleTo(run_page(again))
    assert run_page(again).row(third.id).requeue.isVisibleTo(run_page(again))
    run_page(again).row(fourth.id).remove.click()
    assert fourth.id not in {e.id for e in q2.entries}
    assert fourth.id not in {e.id for e in load_journal(folder)}
