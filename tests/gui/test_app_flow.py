"""The app as a user drives it, end to end: open → target → importance → close → reopen;
cancel of the upcast on open; a truncated model; SIGTERM while imatrix collection's child
process runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from heartbeat import Heartbeat
from PySide6.QtWidgets import QPushButton

from lwq_app.core.jobs import Phase, data_dir
from lwq_app.core.results.workspace import project_imatrix_path
from lwq_app.gui.context import Step
from lwq_app.gui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[2]
TEMP_NAMES = (".lwq-tmp", ".part", ".lock")  # a resume checkpoint is kept on purpose


def _open(qtbot, w: MainWindow, path: Path, timeout: int = 120_000) -> None:
    with qtbot.waitSignal(w.ctx.session.opened, timeout=timeout):
        w.open_path(path)


def _idle(qtbot, w: MainWindow, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not w.ctx.runner.running, timeout=timeout)


@pytest.mark.slow
def test_open_collect_close_and_reopen_restores_the_project(
    qtbot, window_factory, smollm2_f16: Path
) -> None:
    w = window_factory()
    _open(qtbot, w, smollm2_f16)
    w.go_to(Step.TARGET)
    target = w.page(Step.TARGET)
    qtbot.waitUntil(lambda: target.last_fit is not None, timeout=60_000)
    target.set_context(2048)
    qtbot.waitUntil(lambda: w.ctx.session.state.target.context == 2048, timeout=10_000)
    w.go_to(Step.IMPORTANCE)
    imp = w.page(Step.IMPORTANCE)
    with qtbot.waitSignal(imp.heatmap_shown, timeout=180_000):
        imp.collect(chunks=2)
    _idle(qtbot, w)
    folder, state = w.ctx.session.folder, w.ctx.session.state
    assert state.imatrix == project_imatrix_path(folder) and state.imatrix.is_file()
    drawn = imp.heatmap.displayed_array().copy()
    assert all(thread != "MainThread" for _title, thread in w.ctx.runner.calls)
    w.close()
    qtbot.waitUntil(lambda: w.shutdown.done, timeout=10_000)
    assert not (folder / ".lock").exists()  # closing released the project

    again = window_factory()
    _open(qtbot, again, smollm2_f16)
    restored = again.ctx.session.state
    assert restored.imatrix == state.imatrix and restored.target == state.target
    assert restored.target.context == 2048
    assert again.page(Step.IMPORTANCE).is_done() and again.page(Step.TARGET).is_done()
    again.go_to(Step.IMPORTANCE)
    page = again.page(Step.IMPORTANCE)
    qtbot.waitUntil(lambda: page.heatmap.displayed_array().size > 0, timeout=60_000)
    _idle(qtbot, again)
    assert page.heatmap.displayed_array().shape == drawn.shape
    assert not any("ollect" in title for title, _ in again.ctx.runner.calls)  # not collected again


@pytest.mark.slow
def test_cancel_during_the_upcast_leaves_nothing_and_the_app_responsive(
    qtbot, window_factory, smollm2_q4_1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    w = window_factory()
    hb = Heartbeat().start()
    w.open_path(smollm2_q4_1)
    job = w.ctx.session.open_job

    def upcasting() -> bool:
        p = job.progress
        return p is not None and p.phase is Phase.UPCAST and p.fraction > 0.2

    qtbot.waitUntil(upcasting, timeout=60_000)
    buttons = [b for b in w.findChildren(QPushButton, "job_cancel") if b.isVisible()]
    assert len(buttons) == 1
    buttons[0].click()
    qtbot.waitUntil(lambda: job.done, timeout=5_000)
    hb.stop()
    assert hb.max_gap_ms < 500, hb.summary()
    assert not w.ctx.session.is_open
    left = [p for p in data_dir().rglob("*") if p.is_file() and p.suffix != ".json"]
    assert left == [], left  # no partial F16, no project
    _open(qtbot, w, smollm2_q4_1)  # still usable: the same file opens fine afterwards
    assert w.ctx.session.model.path.name == "base-f16.gguf"


def test_a_truncated_model_says_so_and_changes_nothing(
    qtbot, app_window: MainWindow, smollm2_f16: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "cut.gguf"
    with smollm2_f16.open("rb") as f:
        bad.write_bytes(f.read(smollm2_f16.stat().st_size // 2))
    before = sorted(p for p in data_dir().rglob("*"))
    with qtbot.waitSignal(app_window.ctx.session.open_failed, timeout=30_000):
        app_window.open_path(bad)
    msg = app_window.ctx.notifier.messages[-1]
    assert str(bad) in msg.text and "truncated" in msg.text.lower(), msg.text
    assert app_window.message_bar.isVisible() and str(bad) in app_window.message_bar.texts()[0]
    assert not app_window.ctx.session.is_open
    assert sorted(p for p in data_dir().rglob("*")) == before


def _log_text(cache: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((cache / "logs").glob("gui-*")))


@pytest.mark.slow
def test_sigterm_while_imatrix_runs_kills_its_child_and_exits_within_5s(
    tmp_path: Path, smollm2_q4_1: Path
) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    (cache / "demo").mkdir(parents=True)
    shutil.copy(smollm2_q4_1, cache / "demo" / smollm2_q4_1.name)  # `make run`'s demo model
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "LWQ_DATA_DIR": str(data),
           "LWQ_CACHE_DIR": str(cache), "XDG_CONFIG_HOME": str(tmp_path / "config")}  # fmt: skip
    out = (tmp_path / "app.out").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "lwq_app", "--demo"], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        children: list[psutil.Process] = []
        while not children:  # the imatrix child process of the demo's collection
            assert proc.poll() is None, (tmp_path / "app.out").read_text(errors="replace")
            assert time.monotonic() < deadline, _log_text(cache)
            if "ollect" in _log_text(cache):
                children = psutil.Process(proc.pid).children(recursive=True)
            time.sleep(0.1)
        time.sleep(1.0)
        children = psutil.Process(proc.pid).children(recursive=True)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    print(f"exit {took:.2f} s after SIGTERM, {len(children)} child process(es)")
    assert took < 5.0 and rc == 128 + signal.SIGTERM
    time.sleep(0.2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, alive
    left = [p for root in (data, cache) for p in root.rglob("*") if p.name.endswith(TEMP_NAMES)]
    assert not left, left
    assert not any(p.name == "imatrix.gguf" for p in data.rglob("*"))  # no partial output
