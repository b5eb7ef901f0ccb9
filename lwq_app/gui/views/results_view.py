"""The Results step: compare the project's variants — size, quality, speed.

The page shows the core's ``results_table`` of the project (built off the GUI thread with
``submit_call`` whenever the project, a variant or a stored result changes) four ways: the
sortable table, the size-vs-KLD scatter with its Pareto front, the task-score and speed bars,
and the per-tensor diff of two variants' plans. The variants list beside them adds, renames,
deletes and reveals files, makes the nearest stock mixes and starts the Speed test. Every
figure, flag and text is the core's; the page lays them out and routes the clicks. Publish
opens ``publish_dialog`` (the chosen variants and a card of these tables to a Hub repo).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.hub.datasets import offline
from lwq_app.core.hub.defaults import HUB_TASKS, default_eval_settings
from lwq_app.core.results.compare import ResultsTable, results_table
from lwq_app.core.results.eval_settings import EvalSettings, TaskSetting
from lwq_app.core.results.report import export_card

from ..context import AppContext
from ..worker import Job
from .eval_settings_dialog import EvalSettingsDialog, offer_fetch
from .plan_diff_view import PlanDiffView
from .results_bars import ResultsBarsView
from .results_scatter import ResultsScatterView
from .results_table import ResultsTableView
from .variants_panel import VariantsPanel

#: milliseconds a burst of changes is gathered before the table is rebuilt
REBUILD_MS = 60
FIGURES = ("results-scatter.png", "results-tasks.png", "results-speed.png")


class ResultsView(QWidget):
    """The Results page; ``ResultsView(ctx, parent)``."""

    done_changed = Signal(bool)
    table_shown = Signal()  # a new table is on every view

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.table: ResultsTable | None = None
        self._ticket = 0
        self._built: tuple[object, ...] | None = None
        self._done = False
        self._wanted = False  # a rebuild was asked for while the page was hidden
        self.status = QLabel("Open a model to compare its variants.", self)
        self.status.setWordWrap(True)
        self.settings_button = QPushButton("Evaluation settings…", self)
        self.settings_button.setToolTip("How every variant is measured (text, tasks, bench)")
        self.settings_button.clicked.connect(self.edit_settings)
        self.card_button = QPushButton("Export model card…", self)
        self.card_button.setToolTip("The model card's tables (markdown) for these variants")
        self.card_button.clicked.connect(self._card_dialog)
        self.png_button = QPushButton("Export figures…", self)
        self.png_button.setToolTip("The scatter and the bars as PNG files")
        self.png_button.clicked.connect(self._figures_dialog)
        self.publish_button = QPushButton("Publish…", self)
        self.publish_button.setToolTip(
            "Upload chosen variants with a model card of these tables to a Hugging Face Hub repo"
        )
        self.publish_button.clicked.connect(self.open_publish)
        self.publish_button.setEnabled(False)  # until the project has a variant
        self.publish_dialog: QDialog | None = None
        self.missing = QLabel(self)
        self.missing.setWordWrap(True)
        self.fetch_button = QPushButton("Fetch missing task files…", self)
        self.fetch_button.setToolTip(
            "Fetch the task files the setting names but this machine lacks"
        )
        self.fetch_button.clicked.connect(self.fetch_missing)
        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        for b in (self.settings_button, self.card_button, self.png_button, self.publish_button):
            top.addWidget(b)
        banner = QHBoxLayout()
        banner.addWidget(self.missing, 1)
        banner.addWidget(self.fetch_button)

        self.variants = VariantsPanel(ctx, self)
        self.results = ResultsTableView(self)
        self.scatter = ResultsScatterView(self)
        self.bars = ResultsBarsView(self)
        self.diff = PlanDiffView(ctx, self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.results, "Table")
        self.tabs.addTab(self.scatter, "Size vs KLD")
        self.tabs.addTab(self.bars, "Scores and speed")
        self.tabs.addTab(self.diff, "Plan diff")
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.variants)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 3)
        split.setSizes([300, 980])
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(banner)
        lay.addWidget(split, 1)

        self._stale: set[QWidget] = set()
        self.tabs.currentChanged.connect(lambda i: self._sync(self.tabs.widget(i)))
        self.results.row_selected.connect(self._row_selected)
        self.scatter.point_clicked.connect(self.results.select_row)
        self.variants.row_selected.connect(self.results.select_row)
        self._rebuild = QTimer(self)
        self._rebuild.setSingleShot(True)
        self._rebuild.setInterval(REBUILD_MS)
        self._rebuild.timeout.connect(self.rebuild)
        session = ctx.session
        session.state_changed.connect(self.refresh)
        session.opened.connect(self.rebuild_soon)
        ctx.queue.variants_changed.connect(self.rebuild_soon)
        ctx.queue.results_changed.connect(lambda _path: self.rebuild_soon())
        session.closed.connect(lambda: self.show_table(None))
        self._show_missing()

    # -- building ----------------------------------------------------------------------------
    def settings(self) -> EvalSettings:
        """The project's setting (the core's default until the user picks one)."""
        state = self._ctx.session.state
        if state is not None and state.eval_settings is not None:
            return state.eval_settings
        return default_eval_settings()

    def _inputs(self) -> tuple[object, ...] | None:
        """What the table is built from in the project state (plans and targets are not)."""
        st = self._ctx.session.state
        if st is None:
            return None
        return (st.base_model, st.imatrix, st.variants, st.eval_settings)

    def refresh(self) -> None:
        """Rebuild soon if what the table shows changed (a plan edit does not rebuild it)."""
        if self._inputs() != self._built or self._inputs() is None:
            self.rebuild_soon()

    def rebuild_soon(self) -> None:
        """Rebuild the table soon (a burst of changes makes one rebuild) — once the page is
        shown: building it reads every variant's results and the stock mixes' plans in pure
        Python, and while a model opens that job held the GIL the GUI thread needs to lay out
        the Model page (the 80-layer open's stall grew from 162 to 203–355 ms)."""
        if self.isVisible():
            self._rebuild.start()
        else:
            self._wanted = True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._wanted:
            self._wanted = False
            self._rebuild.start()

    def rebuild(self) -> Job | None:
        """Build the core's table off the GUI thread; the newest build wins."""
        self._rebuild.stop()
        session = self._ctx.session
        state, model = session.state, session.model
        if state is None or model is None:
            self._built = None
            self.show_table(None)
            return None
        settings = self.settings()
        self._built = self._inputs()
        self._ticket += 1
        ticket = self._ticket

        def done(table: ResultsTable) -> None:
            if ticket == self._ticket:
                self.show_table(table)

        return self._ctx.runner.submit_call(
            "Build the results table",
            lambda: results_table(state, model, settings),
            on_result=done,
        )

    def show_table(self, table: ResultsTable | None) -> None:
        """Show ``table`` in the list and the table now, in the figures when their tab is
        shown (drawing 40 variants' bars costs more than building the table)."""
        self.table = table
        self.results.set_table(table)
        self.variants.set_table(table)
        self._stale = {self.scatter, self.bars, self.diff}
        self._sync(self.tabs.currentWidget())
        self.card_button.setEnabled(table is not None)
        self.png_button.setEnabled(table is not None)
        self.publish_button.setEnabled(table is not None and len(table.rows) > 1)
        if table is None:
            self.status.setText("Open a model to compare its variants.")
        else:
            n = len(table.rows) - 1
            s = table.settings
            chunks = "all chunks" if s.n_chunks is None else f"{s.n_chunks} chunks"
            text = (
                f"{n} variant{'s' if n != 1 else ''} and the base, measured on {s.text.name} "
                f"(context {s.n_ctx}, {chunks})."
            )
            if table.mixed:
                text += " Shaded cells (†) were measured under another setting."
            self.status.setText(text)
        self._show_missing()
        done = table is not None and any(r.kld is not None for r in table.rows[1:])
        if done != self._done:
            self._done = done
            self.done_changed.emit(done)
        self.table_shown.emit()

    def _sync(self, view: QWidget | None) -> None:
        """Give a figure tab the shown table if it has not got it yet."""
        if view is not None and view in self._stale:
            self._stale.discard(view)
            view.set_table(self.table)  # type: ignore[attr-defined]
        if view is self.scatter:
            rows = self.results.selected_rows()
            self.scatter.select_row(rows[0] if rows else -1)

    def sync_figures(self) -> None:
        """Bring every figure up to date (before exporting them)."""
        for view in list(self._stale):
            self._sync(view)

    def is_done(self) -> bool:
        return self._done

    def _row_selected(self, row: int) -> None:
        self.scatter.select_row(row)
        self.variants.select_row(row)

    # -- settings and task files ---------------------------------------------------------------
    def missing_tasks(self) -> list[TaskSetting]:
        """The setting's benchmarks whose task file is not on disk."""
        return [t for t in self.settings().tasks if not t.path.is_file()]

    def _show_missing(self) -> None:
        missing = self.missing_tasks() if self._ctx.session.state is not None else []
        fetchable = [t for t in missing if t.name in HUB_TASKS]
        text = "Missing task files: " + ", ".join(f"{t.name} ({t.path})" for t in missing)
        if fetchable and offline():
            text += " — offline (HF_HUB_OFFLINE is set): they cannot be fetched now"
        self.missing.setText(text if missing else "")
        self.missing.setVisible(bool(missing))
        self.fetch_button.setVisible(bool(fetchable))

    def fetch_missing(self) -> None:
        for t in self.missing_tasks():
            if t.name in HUB_TASKS:
                offer_fetch(self._ctx, self, t.name, partial(self._fetched, t.name))

    def _fetched(self, name: str, path: Path) -> None:
        s = self.settings()
        tasks = tuple(
            TaskSetting(t.name, path, t.n_tasks) if t.name == name else t for t in s.tasks
        )
        self.save_settings(replace(s, tasks=tasks))

    def save_settings(self, settings: EvalSettings) -> None:
        if self._ctx.session.state is not None:
            self._ctx.session.update(eval_settings=settings)

    def edit_settings(self) -> None:
        dialog = EvalSettingsDialog(self._ctx, self.settings(), self)
        if dialog.exec() and (s := dialog.result_settings()) is not None:
            self.save_settings(s)

    # -- exports -----------------------------------------------------------------------------
    def _card_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export the model card", "model-card.md", "Markdown (*.md)"
        )
        if path:
            self.export_card(Path(path))

    def export_card(self, path: Path) -> Job | None:
        """Write the core's model card of the shown table (atomically, off the GUI thread)."""
        table, model = self.table, self._ctx.session.model
        if table is None:
            return None
        title = model.name if model is not None else ""

        def written(p: Path) -> None:
            self._ctx.notifier.info("Export the model card", f"wrote {p}")

        return self._ctx.runner.submit_call(
            f"Export the model card to {path.name}",
            lambda: export_card(table, path, title),
            on_result=written,
        )

    def _figures_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the figures into")
        if folder:
            self.export_figures(Path(folder))

    def export_figures(self, folder: Path) -> list[Path]:
        """The scatter and the bar charts as PNG files in ``folder`` (charts without data are
        left out); the files written."""
        self.sync_figures()
        out: list[Path] = [self.scatter.export_png(folder / FIGURES[0])]
        for chart, name in ((self.bars.tasks, FIGURES[1]), (self.bars.speed, FIGURES[2])):
            p = chart.export_png(folder / name)
            if p is not None:
                out.append(p)
        self._ctx.notifier.info("Export the figures", ", ".join(str(p) for p in out))
        return out

    def open_publish(self) -> QDialog:
        """The Publish dialog over the project's variants (non-modal: the window stays usable
        while it uploads)."""
        from .publish_dialog import PublishDialog

        if self.publish_dialog is None or not self.publish_dialog.isVisible():
            self.publish_dialog = PublishDialog(self._ctx, self)
        self.publish_dialog.show()
        self.publish_dialog.raise_()
        return self.publish_dialog
