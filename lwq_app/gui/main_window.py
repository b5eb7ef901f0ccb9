"""The main window: the workflow steps, the message bar, the log and job docks, the menus.

The window holds no domain logic: each step is a page (a view given the ``AppContext``),
the sidebar shows the steps and whether each is done (the page's ``done_changed``), and
everything the user asks for goes to the session (open, save, close) or the shutdown
controller (close, quit). Adding a step is one line in ``STEPS``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray, QMimeData, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from lwq_app import __version__

from .context import AppContext, Step
from .job_panel import JobPanelWidget
from .log_dock import LogDockWidget
from .menus import RecentFiles, WindowActions, build_menus
from .message_bar import MessageBarWidget
from .shutdown import ShutdownController
from .status_bar import AppStatusBar

log = logging.getLogger("lwq.gui")

MODEL_FILTER = "GGUF models (*.gguf);;All files (*)"


@dataclass(frozen=True)
class StepSpec:
    """A workflow step: its page class (in ``lwq_app.gui.views``) and its sidebar tooltip."""

    step: Step
    module: str
    cls: str
    tip: str


STEPS: tuple[StepSpec, ...] = (
    StepSpec(Step.MODEL, "model_view", "ModelView", "Open a model and see what it is made of"),
    StepSpec(Step.TARGET, "target_view", "TargetView", "The hardware the model must fit"),
    StepSpec(Step.IMPORTANCE, "importance_view", "ImportanceView", "Which layers matter most"),
    StepSpec(Step.PLAN, "plan_view", "PlanView", "Bits per tensor: drag, Auto, quantize"),
    StepSpec(Step.RUN, "run_view", "RunView", "The job queue: quantize, check, bench"),
    StepSpec(Step.RESULTS, "results_view", "ResultsView", "Compare variants: size, quality, speed"),
)


class StepListWidget(QListWidget):
    """The sidebar: one row per step, with a done mark."""

    def __init__(self, specs: tuple[StepSpec, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("step_list")
        self.setToolTip("The steps of the work, in order; a ✓ marks a finished one")
        self._specs = specs
        self.done: dict[Step, bool] = {}
        for spec in specs:
            item = QListWidgetItem(spec.step.value, self)
            item.setData(Qt.ItemDataRole.UserRole, spec.step)
            self.set_done(spec.step, False)
        self.setFixedWidth(150)
        self.setStyleSheet("QListWidget::item { padding: 8px 10px; }")

    def set_done(self, step: Step, done: bool) -> None:
        i = next(n for n, s in enumerate(self._specs) if s.step is step)
        self.done[step] = done
        item = self.item(i)
        item.setText(f"{step.value}  ✓" if done else step.value)
        item.setToolTip(f"{self._specs[i].tip}{' (done)' if done else ''}")


class MainWindow(QMainWindow):
    """The lwq window; ``MainWindow(ctx)``."""

    step_changed = Signal(object)  # Step shown now

    SETTINGS_GEOMETRY = "window/geometry"
    SETTINGS_STATE = "window/state"

    def __init__(
        self,
        ctx: AppContext,
        parent: QWidget | None = None,
        *,
        restore_layout: bool = True,
        steps: tuple[StepSpec, ...] = STEPS,
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.step_specs = steps
        self.setObjectName("main_window")
        self.setAcceptDrops(True)
        self.recent = RecentFiles(ctx.settings)
        self.shutdown = ShutdownController(ctx, self)
        self.shutdown.finished.connect(self._on_shut_down)
        self._save_layout = restore_layout
        self._opening: Path | None = None

        self.message_bar = MessageBarWidget(ctx.notifier, self)
        self.sidebar = StepListWidget(steps, self)
        self.stack = QStackedWidget(self)
        self.stack.setObjectName("pages")
        self.pages: dict[Step, QWidget] = {}
        self._make_pages()
        self.sidebar.currentRowChanged.connect(self._on_row)
        central = QWidget(self)
        box = QVBoxLayout(central)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.message_bar)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.sidebar)
        row.addWidget(self.stack, 1)
        box.addLayout(row, 1)
        self.setCentralWidget(central)

        self.log_dock = LogDockWidget(self)
        self.job_panel = JobPanelWidget(ctx.runner, self)
        self.job_dock = QDockWidget("Jobs", self)
        self.job_dock.setObjectName("job_dock")
        self.job_dock.setToolTip("The jobs running now, with progress, time left and Cancel")
        self.job_dock.setWidget(self.job_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.job_dock)
        self.splitDockWidget(self.job_dock, self.log_dock, Qt.Orientation.Horizontal)
        self.resizeDocks([self.job_dock], [160], Qt.Orientation.Vertical)
        self.resizeDocks([self.job_dock, self.log_dock], [420, 1000], Qt.Orientation.Horizontal)
        self.status = AppStatusBar(ctx.runner, self)
        self.setStatusBar(self.status)
        self.menu_actions: WindowActions = build_menus(self)

        ctx.session.opening.connect(self._on_opening)
        ctx.session.opened.connect(self._on_opened)
        for sig in (ctx.session.state_changed, ctx.session.saved, ctx.session.closed):
            sig.connect(self._update_title)
        self._update_title()
        self.resize(1280, 820)
        if restore_layout:
            self.restore_layout()
        self.sidebar.setCurrentRow(0)

    # -- the steps ---------------------------------------------------------------------------
    def _make_pages(self) -> None:
        """Build each step's page; a view not written yet gets a placeholder."""
        for spec in self.step_specs:
            name = f"lwq_app.gui.views.{spec.module}"
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name not in (name, "lwq_app.gui.views"):
                    raise
                label = QLabel(f"The {spec.step.value} step is not built yet.", self)
                label.setAlignment(Qt.AlignmentFlag.AlignCenter)
                label.setToolTip("This part of lwq comes with a later build")
                page: QWidget = label
            else:
                page = getattr(module, spec.cls)(self.ctx, self)
                done_changed = getattr(page, "done_changed", None)
                if done_changed is not None:
                    done_changed.connect(lambda d, s=spec.step: self.sidebar.set_done(s, bool(d)))
                is_done = getattr(page, "is_done", None)
                if callable(is_done):
                    self.sidebar.set_done(spec.step, bool(is_done()))
            page.setObjectName(f"page_{spec.step.name.lower()}")
            self.pages[spec.step] = page
            self.stack.addWidget(page)

    def page(self, step: Step) -> QWidget:
        return self.pages[step]

    def current_step(self) -> Step:
        return self.step_specs[self.stack.currentIndex()].step

    def go_to(self, step: Step) -> None:
        self.sidebar.setCurrentRow(next(i for i, s in enumerate(self.step_specs) if s.step is step))

    def _on_row(self, row: int) -> None:
        if 0 <= row < self.stack.count():
            self.stack.setCurrentIndex(row)
            self.step_changed.emit(self.step_specs[row].step)

    # -- opening and closing -----------------------------------------------------------------
    def open_path(self, path: str | Path) -> None:
        """Open a model or project folder (as a job; a pending open is cancelled)."""
        job = self.ctx.session.open_job
        if job is not None and not job.done:
            self.ctx.runner.cancel(job)
        self.ctx.session.open(Path(path))

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", self._last_dir(), MODEL_FILTER)
        if path:
            self._remember_dir(Path(path).parent)
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a project folder", self._last_dir())
        if path:
            self._remember_dir(Path(path))
            self.open_path(path)

    def show_hub(self) -> None:
        """The Model step's Hub pane (search, download, convert)."""
        self.go_to(Step.MODEL)
        self.pages[Step.MODEL].show_hub()  # type: ignore[attr-defined]

    def open_safetensors_dialog(self) -> None:
        self.go_to(Step.MODEL)
        self.pages[Step.MODEL].choose_safetensors_folder()  # type: ignore[attr-defined]

    def close_project(self) -> None:
        self.ctx.session.close()

    def quit(self) -> None:
        self.shutdown.start("quit")

    def _last_dir(self) -> str:
        return str(self.ctx.settings.value("recent/dir", str(Path.home())))

    def _remember_dir(self, folder: Path) -> None:
        self.ctx.settings.setValue("recent/dir", str(folder))

    def _on_opening(self, path: Path) -> None:
        self._opening = Path(path)

    def _on_opened(self) -> None:
        session = self.ctx.session
        opened = self._opening or (session.source.path if session.source else None)
        if opened is not None and opened.exists():
            self.recent.add(opened)
        self.go_to(Step.MODEL)
        self._update_title()

    def _update_title(self) -> None:
        session = self.ctx.session
        if session.is_open:
            model = session.model or session.source
            name = (model.name if model is not None else "") or (
                session.folder.name if session.folder else "project"
            )
            self.setWindowTitle(f"{name}[*] — lwq")
        else:
            self.setWindowTitle("lwq[*]")
        self.setWindowModified(session.is_open and session.dirty)

    def show_about(self) -> None:
        QMessageBox.about(self, "About lwq", about_text())

    # -- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasText():
            event.acceptProposedAction()  # a wrong drop is explained on drop, not refused
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path, problem = dropped_path(event.mimeData())
        event.acceptProposedAction()
        if path is not None:
            self.open_path(path)
        else:
            self.ctx.notifier.warn("Open a dropped file", problem)

    # -- layout and shutdown -----------------------------------------------------------------
    def restore_layout(self) -> None:
        geometry = self.ctx.settings.value(self.SETTINGS_GEOMETRY)
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = self.ctx.settings.value(self.SETTINGS_STATE)
        if isinstance(state, QByteArray):
            self.restoreState(state)

    def save_layout(self) -> None:
        self.ctx.settings.setValue(self.SETTINGS_GEOMETRY, self.saveGeometry())
        self.ctx.settings.setValue(self.SETTINGS_STATE, self.saveState())
        self.ctx.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.shutdown.done:
            event.ignore()
            self.shutdown.start("close")
            return
        self.status.stop()
        self.log_dock.detach()
        event.accept()

    def _on_shut_down(self, _code: int) -> None:
        if self._save_layout:
            self.save_layout()
        QTimer.singleShot(0, self.close)  # not from inside the closeEvent that started it


def dropped_path(mime: QMimeData) -> tuple[Path | None, str]:
    """The model or project folder a drop names, or why it names none."""
    hint = "drop a .gguf model file or a project folder onto the window"
    if not mime.hasUrls():
        text = mime.text().strip() if mime.hasText() else ""
        what = f"{text[:80]!r} is not a file" if text else "nothing that is a file was dropped"
        return None, f"{what}: {hint} (for a Hub model, File → Search the Hub)"
    local = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
    if not local:
        return None, f"{mime.urls()[0].toString()} is not a local file: {hint}"
    folders = [p for p in local if p.is_dir()]
    models = sorted(p for p in local if p.suffix.lower() == ".gguf" and p.is_file())
    if len(folders) == 1 and len(local) == 1:
        return folders[0], ""
    if models and len(models) == len(local):
        return models[0], ""  # several parts of a split model: the first names them all
    odd = next(p for p in local if p not in models)
    if not odd.exists():
        return None, f"{odd} does not exist: {hint}"
    return None, f"{odd.name} is not a GGUF model (.gguf) nor a project folder: {hint}"


def about_text() -> str:
    lines = [f"<b>lwq {__version__}</b>", "Layer-wise quantization of LLMs through llama.cpp."]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        version = importlib.metadata.version("llama-cpp-python")
        lines.append(f"llama.cpp as bundled with llama-cpp-python {version}")
    return "<br>".join(lines)
