"""The window's shell: menus and shortcuts, the error road, drops, recent files, shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from heartbeat import Heartbeat
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QAbstractButton, QApplication, QWidget

from lwq_app.core.jobs import Cancelled, Phase, Progress, data_dir, log_dir
from lwq_app.gui import shutdown as shutdown_mod
from lwq_app.gui.context import Step
from lwq_app.gui.main_window import STEPS, MainWindow
from lwq_app.gui.menus import RecentFiles, fill_recent_menu
from lwq_app.gui.notifier import Level

ROOT = Path(__file__).resolve().parents[2]
TEMP_NAMES = (".lwq-tmp", ".part", ".lock")


def _drop(mime: QMimeData) -> QDropEvent:
    return QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


# --- the window --------------------------------------------------------------------------


def test_the_window_opens_offscreen_with_its_steps_and_docks(app_window: MainWindow) -> None:
    w = app_window
    assert w.isVisible() and w.windowTitle() == "lwq[*]"
    names = [w.sidebar.item(i).text() for i in range(w.sidebar.count())]
    assert (
        names
        == [s.step.value for s in STEPS]
        == ["Model", "Target", "Importance", "Plan", "Run", "Results"]
    )
    assert w.stack.count() == len(STEPS) and w.current_step() is Step.MODEL
    w.go_to(Step.IMPORTANCE)
    assert w.stack.currentWidget() is w.page(Step.IMPORTANCE)
    assert w.log_dock.isVisible() and w.job_dock.isVisible()
    assert w.status.memory_label.text().startswith("Memory ")
    assert w.status.job_label.text() == "Ready"


def test_menus_use_the_standard_keys_and_no_shortcut_twice(app_window: MainWindow) -> None:
    a = app_window.menu_actions
    std = QKeySequence.StandardKey
    for action, key in (
        (a.open, std.Open),
        (a.save, std.Save),
        (a.close_project, std.Close),
        (a.undo, std.Undo),
        (a.redo, std.Redo),
    ):
        assert action.shortcuts() == QKeySequence.keyBindings(key), action.objectName()
    assert a.quit.shortcuts() == (QKeySequence.keyBindings(std.Quit) or [QKeySequence("Ctrl+Q")])
    menus = [
        m.title().replace("&", "") for m in app_window.menuBar().findChildren(type(a.recent_menu))
    ]
    for title in ("File", "Edit", "View", "Help", "Open Recent"):
        assert title in menus
    taken = Counter(
        ks.toString()
        for action in app_window.findChildren(QAction)
        for ks in action.shortcuts()
        if not ks.isEmpty()
    )
    assert not [k for k, n in taken.items() if n > 1], taken
    for action in a.all():
        assert action.toolTip().strip(), action.objectName()
    for hub in (a.search_hub, a.open_safetensors):
        assert hub.isEnabled() and hub.toolTip()


def test_every_control_of_the_shell_has_a_tooltip(app_window: MainWindow, qtbot) -> None:
    w = app_window
    w.ctx.notifier.info("Test", "a message, for its dismiss button")
    release = threading.Event()

    def waits(_request: object, *, progress, cancel) -> None:
        progress(Progress(Phase.LOAD, 0, 1))
        while not cancel.cancelled and not release.wait(0.01):
            pass
        raise Cancelled("cancelled")

    job = w.ctx.runner.submit("A job with a row", waits, None)
    qtbot.waitUntil(lambda: job.id in w.job_panel.rows)
    pages = list(w.pages.values())
    shell: list[QWidget] = [
        w.sidebar,
        w.message_bar,
        w.log_dock,
        w.log_dock.text,
        w.job_dock,
        w.job_panel,
        w.status.job_label,
        w.status.memory_label,
    ]
    for widget in w.findChildren(QAbstractButton):
        if widget.objectName().startswith("qt_") or any(p.isAncestorOf(widget) for p in pages):
            continue  # Qt's own (dock, menu bar) buttons; the views test their own controls
        shell.append(widget)
    missing = [f"{type(x).__name__} {x.objectName()!r}" for x in shell if not x.toolTip().strip()]
    assert not missing
    w.ctx.runner.cancel(job)
    qtbot.waitUntil(lambda: job.done)


# --- the error road ----------------------------------------------------------------------


def test_a_message_reaches_the_bar_the_log_dock_and_the_log_file(
    app_window: MainWindow, qtbot
) -> None:
    w = app_window
    w.ctx.notifier.warn("Checking", "a distinctive warning 4711")
    assert w.message_bar.isVisible()
    assert w.message_bar.texts()[0] == "Checking: a distinctive warning 4711"
    assert w.message_bar.rows[0].message.level is Level.WARNING
    qtbot.waitUntil(lambda: "distinctive warning 4711" in w.log_dock.text.toPlainText())
    w.log_dock.flush()
    path = w.log_dock.log_path
    assert path is not None and path.parent == log_dir()
    assert re.fullmatch(rf"gui-\d{{8}}-\d{{6}}-{os.getpid()}(-\d+)?\.log", path.name), path
    assert "distinctive warning 4711" in path.read_text(encoding="utf-8")
    w.message_bar.rows[0].dismiss_button.click()
    assert not w.message_bar.rows and not w.message_bar.isVisible()


def test_opening_a_file_that_is_not_gguf_says_so_and_changes_nothing(
    app_window: MainWindow, qtbot, tmp_path: Path
) -> None:
    w = app_window
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a GGUF file at all\n" * 40)
    before = _files(data_dir()) if data_dir().exists() else {}
    with qtbot.waitSignal(w.ctx.session.open_failed, timeout=30_000):
        w.open_path(junk)
    texts = w.message_bar.texts()
    assert texts and texts[0].startswith("Open junk.gguf: ") and "junk.gguf" in texts[0][16:]
    assert "unexpected" not in texts[0] and "internal error" not in texts[0]
    assert w.message_bar.rows[0].message.level is Level.ERROR
    assert not w.ctx.session.is_open and w.windowTitle() == "lwq[*]"
    assert junk.read_bytes() == b"this is not a GGUF file at all\n" * 40
    assert (_files(data_dir()) if data_dir().exists() else {}) == before
    assert junk.resolve() not in w.recent.paths()


def test_dropping_a_file_that_is_not_a_model_says_so(
    app_window: MainWindow, qtbot, tmp_path: Path
) -> None:
    w = app_window
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(notes))])
    enter = QDragEnterEvent(
        QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(w, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(w, _drop(mime))
    assert "notes.txt is not a GGUF model" in w.message_bar.texts()[0]
    assert w.ctx.session.open_job is None  # nothing was started

    text = QMimeData()
    text.setText("hello world")
    w.dropEvent(_drop(text))
    assert "'hello world' is not a file" in w.message_bar.texts()[0]


def test_dropping_a_gguf_opens_it(app_window: MainWindow, qtbot, tmp_path: Path) -> None:
    junk = tmp_path / "dropped.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 7)  # truncated: the core's reader refuses it
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(junk))])
    with qtbot.waitSignal(app_window.ctx.session.open_failed, timeout=30_000):
        app_window.dropEvent(_drop(mime))
    assert app_window.message_bar.texts()[0].startswith("Open dropped.gguf: ")


# --- projects and recent files -----------------------------------------------------------


def test_recent_files_keep_ten_newest_first_and_prune_missing(settings, tmp_path: Path) -> None:
    recent = RecentFiles(settings)
    files = [tmp_path / f"m{i}.gguf" for i in range(12)]
    for f in files:
        f.write_bytes(b"x")
        recent.add(f)
    assert recent.paths() == [f.resolve() for f in reversed(files)][:10]
    recent.add(files[5])
    assert recent.paths()[0] == files[5].resolve()
    files[5].unlink()
    assert files[5].resolve() not in recent.paths()


@pytest.mark.slow
def test_an_opened_model_is_in_open_recent_and_the_title(
    app_window: MainWindow, qtbot, smollm2_f16: Path
) -> None:
    w = app_window
    w.go_to(Step.IMPORTANCE)
    with qtbot.waitSignal(w.ctx.session.opened, timeout=180_000):
        w.open_path(smollm2_f16)
    assert w.current_step() is Step.MODEL
    fill_recent_menu(w, w.menu_actions.recent_menu)
    listed = [a.data() for a in w.menu_actions.recent_menu.actions() if a.data()]
    assert listed[0] == str(smollm2_f16.resolve())
    assert w.windowTitle().endswith("[*] — lwq") and w.windowTitle() != "lwq[*]"
    folder = w.ctx.session.folder
    assert folder is not None and (folder / ".lock").exists()
    w.close_project()
    assert not w.ctx.session.is_open and not (folder / ".lock").exists()
    assert w.windowTitle() == "lwq[*]"


# --- shutdown ----------------------------------------------------------------------------


def test_closing_cancels_a_running_job_and_exits_promptly(qtbot, window_factory) -> None:
    w = window_factory()

    def runs_until_cancelled(_request: object, *, progress, cancel) -> None:
        for i in range(10_000):
            progress(Progress(Phase.COLLECT, i, 10_000, f"chunk {i}"))
            if cancel.cancelled:
                raise Cancelled("cancelled")
            time.sleep(0.005)

    job = w.ctx.runner.submit("Long job", runs_until_cancelled, None)
    qtbot.waitUntil(lambda: job.progress is not None, timeout=5_000)
    with Heartbeat() as hb:
        t0 = time.monotonic()
        w.close()
        qtbot.waitUntil(lambda: w.shutdown.done, timeout=6_000)
        took = time.monotonic() - t0
    assert took < 1.0 and job.done and job.cancelled and not w.shutdown.stuck
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=1_000)
    assert hb.max_gap_ms < 300, hb.summary()  # the wait does not block the event loop


def test_closing_kills_a_jobs_child_process(qtbot, window_factory) -> None:
    from lwq_app.core.jobs import run_in_child

    w = window_factory(show=False)
    pids: list[int] = []

    def in_child(_request: object, *, progress, cancel) -> None:
        run_in_child(
            "childjobs:forever", {}, progress=progress, cancel=cancel, on_start=pids.append
        )

    job = w.ctx.runner.submit("Child job", in_child, None)
    qtbot.waitUntil(lambda: job.progress is not None, timeout=30_000)  # the child runs
    child = psutil.Process(pids[0])
    t0 = time.monotonic()
    w.close()
    qtbot.waitUntil(lambda: w.shutdown.done, timeout=6_000)
    assert time.monotonic() - t0 < 5.0 and job.cancelled and not w.shutdown.stuck
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_a_job_that_ignores_cancel_does_not_hold_the_shutdown(
    qtbot, window_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutdown_mod, "JOB_WAIT", 0.3)
    w = window_factory(show=False)
    release = threading.Event()

    def deaf(_request: object, *, progress, cancel) -> None:
        release.wait(10)

    job = w.ctx.runner.submit("Deaf job", deaf, None)
    w.shutdown.start("test")
    qtbot.waitUntil(lambda: w.shutdown.done, timeout=3_000)
    assert w.shutdown.stuck == ("Deaf job",)
    release.set()
    qtbot.waitUntil(lambda: job.done, timeout=5_000)


def _log_text(cache: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (cache / "logs").glob("gui-*.log"))


@pytest.mark.slow
def test_sigterm_mid_job_exits_within_5s_with_no_orphan_and_no_temp_file(
    tmp_path: Path, smollm2_q4_1: Path
) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "LWQ_DATA_DIR": str(data),
        "LWQ_CACHE_DIR": str(cache),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    out = (tmp_path / "app.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lwq_app", str(smollm2_q4_1)],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while ": upcast" not in _log_text(cache):  # the F16 upcast of the quantized source
            assert proc.poll() is None, (tmp_path / "app.out").read_text(errors="replace")
            assert time.monotonic() < deadline, _log_text(cache)
            time.sleep(0.05)
        time.sleep(0.3)
        children = psutil.Process(proc.pid).children(recursive=True)
        writing = [p for p in data.rglob("*") if p.name.endswith(TEMP_NAMES)]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    log = _log_text(cache)
    print(f"exit {took:.2f} s after SIGTERM (rc {rc}, {len(children)} children, {writing})")
    assert writing, "the upcast had not started writing: not a mid-job SIGTERM"
    assert took < 5.0, log
    assert rc == 128 + signal.SIGTERM, (tmp_path / "app.out").read_text(errors="replace")
    assert "shutting down (SIGTERM)" in log and "job cancelled: Open" in log
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive
    left = [p for root in (data, cache) for p in root.rglob("*") if p.name.endswith(TEMP_NAMES)]
    assert not left


def test_a_signal_wakes_the_idle_loop_and_a_second_one_exits_at_once(
    qtbot, qapp, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(shutdown_mod, "hard_exit", exits.append)
    bridge = shutdown_mod.SignalWakeupBridge()
    try:
        with qtbot.waitSignal(bridge.signalled, timeout=2_000) as got:
            os.kill(os.getpid(), signal.SIGTERM)  # Qt is idle in waitSignal's loop
        assert got.args == [signal.SIGTERM] and not exits
        os.kill(os.getpid(), signal.SIGINT)
        qtbot.waitUntil(lambda: exits == [128 + signal.SIGINT], timeout=2_000)
    finally:
        bridge.uninstall()
    assert signal.getsignal(signal.SIGTERM) != bridge._handle
