"""The Importance step: collect (or load) the project's imatrix and see which layers matter.

Every number comes from the core: ``collect_imatrix`` writes the project's imatrix (with a
resume checkpoint every few chunks), ``attach_imatrix`` adopts a file the user has (checked
against the model: another model's imatrix is refused with the core's message, and nothing
changes), ``imatrix_statistics`` and ``measure_sensitivity`` give the numbers and
``heatmap_for`` the matrix the ``HeatmapView`` draws. All of them run through the worker
bridge; this page only chooses what to run and what to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.hub import FetchRequest, fetch_dataset
from lwq_app.core.importance import (
    CANDIDATES,
    STAT_FIELDS,
    ImatrixRequest,
    ImatrixStats,
    Sensitivity,
    SensitivityRequest,
    StatisticsRequest,
    collect_imatrix,
    heatmap_for,
    imatrix_statistics,
)
from lwq_app.core.importance import (
    measure_sensitivity as sensitivity_job,
)
from lwq_app.core.importance.collection import RESUME_SUFFIX
from lwq_app.core.importance.heatmap import SENSITIVITY_PREFIX
from lwq_app.core.jobs import CancelToken, ProgressSink
from lwq_app.core.jobs.resources import CALIBRATION_TEXT
from lwq_app.core.modelfile import ModelInfo
from lwq_app.core.results.workspace import ProjectState, attach_imatrix, project_imatrix_path

from ..context import AppContext
from ..worker import Job
from .heatmap_view import HeatmapView
from .imatrix_panel import BUNDLED, HUB, HUB_DATASET, SAVE_EVERY, TEXT_FILE, ImatrixPanel
from .tensor_details import TensorDetailsTable, stat_label

#: what the heatmap's place says while there is none
EMPTY_TEXT = {
    "closed": "Open a model (the Model step): its layers × tensor kinds heatmap appears here.",
    "none": "No imatrix yet: Collect one on a calibration text, or Load one made for this "
    "model; its heatmap appears here.",
    "busy": "Working on the importance matrix… (progress and Cancel in the Jobs panel)",
}
#: chunks of the first collection ``make run`` starts (about 2 s each for SmolLM2 on 2 cores)
FIRST_CHUNKS = 16
#: rows per tensor a quick (tour, smoke test) sensitivity samples
QUICK_ROWS = 32
#: the type of the first sensitivity map offered: ~4 bits, and its 32-wide blocks fit the
#: rows of nearly every tensor (a K-quant's 256 do not fit e.g. SmolLM2's 576-wide rows)
DEFAULT_SENSITIVITY_TYPE = "Q4_0"


@dataclass(frozen=True)
class _AttachRequest:
    folder: Path
    state: ProjectState
    path: Path
    model: ModelInfo


def _attach(r: _AttachRequest, *, progress: ProgressSink, cancel: CancelToken) -> ProjectState:
    """``attach_imatrix`` in the job shape the worker bridge runs."""
    return attach_imatrix(r.folder, r.state, r.path, r.model)


class ImportanceView(QWidget):
    """Collect or load the imatrix, pick a statistic, read the heatmap, inspect a tensor."""

    done_changed = Signal(bool)
    heatmap_shown = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._jobs: set[int] = set()
        self.job: Job | None = None  # the last job this page started
        self._key: tuple[object, ...] | None = None  # the imatrix file the numbers are of
        self._stats: ImatrixStats | None = None
        self._sens: Sensitivity | None = None
        self._pending: dict[str, Job] = {}
        self._rows: int | None = None  # rows per tensor for the sensitivity, if not the default
        self._done = False

        self.panel = ImatrixPanel(ctx.quick, self)
        self.panel.collect_requested.connect(lambda resume: self.collect(resume=resume))
        self.panel.load_requested.connect(self.load_imatrix)
        self.panel.source.currentIndexChanged.connect(self._update_controls)

        self.statistic = QComboBox()
        for key in (*STAT_FIELDS, *(SENSITIVITY_PREFIX + t for t in CANDIDATES)):
            self.statistic.addItem(stat_label(key), key)
        self.statistic.setToolTip(
            "What the heatmap shows: an imatrix statistic (as llama-imatrix --show-statistics) "
            "or the error a type causes per tensor (sensitivity, measured as a job)"
        )
        self.statistic.currentIndexChanged.connect(lambda _i: self._show())
        self.log_box = QCheckBox("Log scale")
        self.log_box.setChecked(True)  # imatrix sums and errors span orders of magnitude
        self.log_box.setToolTip("log10 of the values (cells ≤ 0 are grey: no logarithm)")
        self.log_box.toggled.connect(self._set_log_scale)
        self.png_button = QPushButton("Export PNG…")
        self.png_button.setToolTip("Save the heatmap as a 1440 px wide PNG")
        self.png_button.clicked.connect(lambda: self._export("png"))
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.setToolTip("Save the heatmap's exact values as CSV")
        self.csv_button.clicked.connect(lambda: self._export("csv"))
        row = QHBoxLayout()
        row.addWidget(QLabel("Show:"))
        row.addWidget(self.statistic, 1)
        for w in (self.log_box, self.png_button, self.csv_button):
            row.addWidget(w)

        self.heatmap = HeatmapView(self)
        self.heatmap.cell_clicked.connect(self.show_details)
        self.details = TensorDetailsTable(self)
        self.details.setMinimumWidth(330)
        self.details.setMaximumWidth(420)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.heatmap)
        split.addWidget(self.details)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)

        lay = QVBoxLayout(self)
        lay.addWidget(self.panel)
        lay.addLayout(row)
        lay.addWidget(split, 1)

        ctx.session.opened.connect(self._sync)
        ctx.session.state_changed.connect(self._sync)
        ctx.session.closed.connect(self._on_closed)
        ctx.runner.job_ended.connect(self._on_job_ended)
        self._sync()

    # -- state ------------------------------------------------------------------------------
    def is_done(self) -> bool:
        """The project has an imatrix."""
        state = self._ctx.session.state
        return state is not None and state.imatrix is not None

    def _imatrix_key(self) -> tuple[object, ...] | None:
        state = self._ctx.session.state
        if state is None or state.imatrix is None:
            return None
        try:
            st = Path(state.imatrix).stat()
        except OSError:
            return (state.imatrix,)
        return (state.imatrix, st.st_mtime_ns, st.st_size)

    def _sync(self) -> None:
        """Follow the project: its imatrix (numbers reloaded when the file changed), the
        checkpoint, the sidebar's done mark."""
        done = self.is_done()
        if done != self._done:
            self._done = done
            self.done_changed.emit(done)
        key = self._imatrix_key()
        if key != self._key:
            self._key, self._stats, self._sens = key, None, None
            self.details.placeholder()
            if key is None:
                self.heatmap.clear()
            else:
                self._show()
        self._update_controls()

    def _update_controls(self) -> None:
        session = self._ctx.session
        folder = session.folder
        ckpt = (
            folder is not None and Path(f"{project_imatrix_path(folder)}{RESUME_SUFFIX}").is_file()
        )
        busy = bool(self._jobs)
        self.panel.refresh(is_open=session.is_open, busy=busy, checkpoint=ckpt, state=session.state)
        shown = self.heatmap.hm is not None
        self.png_button.setEnabled(shown)
        self.csv_button.setEnabled(shown)
        if not shown:
            why = "busy" if busy else "none" if session.is_open else "closed"
            self.heatmap.placeholder.setText(EMPTY_TEXT[why])

    # -- jobs ---------------------------------------------------------------------------------
    def _submit(self, title: str, fn: Callable[..., Any], request: Any, **slots: Any) -> Job:
        job = self._ctx.runner.submit(title, fn, request, **slots)
        self._jobs.add(job.id)
        self.job = job
        self._update_controls()
        return job

    def _on_closed(self) -> None:
        """The project closed: its jobs here are of no use any more (the core removes what
        a cancelled job was writing)."""
        for job in self._ctx.runner.running:
            if job.id in self._jobs:
                self._ctx.runner.cancel(job)
        self._sync()

    def _on_job_ended(self, job: Job) -> None:
        if job.id in self._jobs:
            self._jobs.discard(job.id)
            self._update_controls()

    def collect(self, chunks: int | None = None, *, resume: bool = False) -> Job | None:
        """Collect the project's imatrix on the chosen text (``chunks`` None: the spin box;
        ``resume``: continue from the project's checkpoint)."""
        session = self._ctx.session
        if session.folder is None or session.model is None:
            self._ctx.notifier.warn("Collect importance", "open a model first")
            return None
        n = self.panel.chunks.value() if chunks is None else chunks
        n = n if n and n > 0 else -1
        source = self.panel.chosen()
        if source == HUB:
            return self._submit(
                "Fetch eaddario's calibration set",
                fetch_dataset,
                FetchRequest(HUB_DATASET),
                on_result=lambda r: self._collect_on(r.path, n, resume, r.dataset.repo),
            )
        if source == TEXT_FILE:
            text = self.panel.text_file()
            if text is None:
                self._ctx.notifier.warn("Collect importance", "choose a text file first")
                return None
            return self._collect_on(text, n, resume, None)
        return self._collect_on(CALIBRATION_TEXT, n, resume, CALIBRATION_TEXT.name)

    def _collect_on(self, text: Path, chunks: int, resume: bool, dataset: str | None) -> Job:
        session = self._ctx.session
        assert session.folder is not None and session.model is not None
        request = ImatrixRequest(
            session.model.path,
            text,
            project_imatrix_path(session.folder),
            chunks=chunks,
            resume=resume,
            save_every=SAVE_EVERY,
            dataset=dataset,
        )
        folder = session.folder

        def collected(result: Any) -> None:
            if self._ctx.session.folder == folder:  # still the project it was collected for
                self.load_imatrix(result.output)

        return self._submit("Collect importance", collect_imatrix, request, on_result=collected)

    def load_imatrix(self, path: str | Path) -> Job | None:
        """Adopt ``path`` as the project's imatrix (checked against the model, as a job)."""
        session = self._ctx.session
        if session.folder is None or session.model is None or session.state is None:
            self._ctx.notifier.warn("Load imatrix", "open a model first")
            return None
        request = _AttachRequest(session.folder, session.state, Path(path), session.model)
        return self._submit("Load imatrix", _attach, request, on_result=self._attached)

    def _attached(self, state: ProjectState) -> None:
        if self._ctx.session.state is None:
            return  # the project was closed meanwhile
        self._key = None  # the file may be new under the same name: reload its numbers
        self._ctx.session.update(imatrix=state.imatrix, imatrix_dataset=state.imatrix_dataset)

    def start_default_collection(self) -> None:
        """``make run``: show the project's imatrix, or collect a first one on the bundled
        text — ``FIRST_CHUNKS`` chunks, so a new user sees heatmaps within a minute (the
        whole text takes minutes; Collect again for all of it)."""
        if self.is_done():
            self._show()
            return
        self.panel.source.setCurrentIndex(self.panel.source.findData(BUNDLED))
        self.panel.chunks.setValue(FIRST_CHUNKS)
        self.collect()

    # -- showing ------------------------------------------------------------------------------
    def set_statistic(self, name: str) -> None:
        """Show ``name``: a ``STAT_FIELDS`` key, ``sensitivity:TYPE`` or a combo label."""
        i = self.statistic.findData(name)
        i = i if i >= 0 else self.statistic.findText(name)
        if i < 0:
            raise KeyError(f"unknown statistic {name!r}")
        if i == self.statistic.currentIndex():
            self._show()
        else:
            self.statistic.setCurrentIndex(i)

    def _show(self) -> None:
        """Draw the chosen statistic, first getting its numbers as a job if needed."""
        session = self._ctx.session
        state, model = session.state, session.model
        if state is None or model is None or state.imatrix is None:
            return
        key = self.statistic.currentData()
        sensitivity = key.startswith(SENSITIVITY_PREFIX)
        source = self._sens if sensitivity else self._stats
        if source is None:
            self._fetch_numbers(sensitivity, model.path, Path(state.imatrix))
            return
        hm = heatmap_for(source, key, model)
        missing = "this type cannot take the tensor" if sensitivity else "no imatrix data"
        self.heatmap.show_heatmap(
            hm, log=self.log_box.isChecked(), title=stat_label(key), missing=missing
        )
        self._update_controls()
        self.heatmap_shown.emit()

    def _fetch_numbers(self, sensitivity: bool, model: Path, imatrix: Path) -> None:
        """The statistics (or the sensitivity) of the project's imatrix, as a job (once)."""
        what = "sensitivity" if sensitivity else "statistics"
        pending = self._pending.get(what)
        if pending is not None and not pending.done:
            return
        key = self._key
        if sensitivity:
            rows = self._rows or (QUICK_ROWS if self._ctx.quick else SensitivityRequest.max_rows)
            fn: Callable[..., Any] = sensitivity_job
            request: Any = SensitivityRequest(model, imatrix, max_rows=rows)
            title = "Measure sensitivity"
        else:
            fn, request, title = (
                imatrix_statistics,
                StatisticsRequest(imatrix),
                "Imatrix statistics",
            )

        def got(result: Any) -> None:
            if key != self._key:  # the imatrix changed meanwhile: these numbers are stale
                return
            if sensitivity:
                self._sens = result
            else:
                self._stats = result
            self._show()

        self._pending[what] = self._submit(title, fn, request, on_result=got)

    def sensitivity_statistic(self) -> str:
        """The statistic key of the first sensitivity map offered."""
        return SENSITIVITY_PREFIX + DEFAULT_SENSITIVITY_TYPE

    def _set_log_scale(self, on: bool) -> None:
        self.heatmap.set_log_scale(on)

    def measure_sensitivity(self, max_rows: int | None = None) -> Job | None:
        """Measure the sensitivity again (``max_rows`` rows per tensor; None: the profile's)
        and show its map; the job, or None without an imatrix."""
        self._rows, self._sens = max_rows, None
        self.set_statistic(self.sensitivity_statistic())
        job = self._pending.get("sensitivity")
        return job if job is not None and not job.done else None

    def details_text(self) -> str:
        """The details panel as text ("" until a tensor is clicked)."""
        rows = self.details.rows()
        return "" if "tensor" not in rows else "\n".join(f"{k}: {v}" for k, v in rows.items())

    def show_details(self, name: str) -> None:
        """The details panel for tensor ``name``: type and shape, statistics, error."""
        key = self.statistic.currentData()
        type_name = key[len(SENSITIVITY_PREFIX) :] if key.startswith(SENSITIVITY_PREFIX) else None
        self.details.show_tensor(name, self._ctx.session.model, self._stats, self._sens, type_name)

    def _export(self, kind: str) -> None:
        filters = {"png": "PNG image (*.png)", "csv": "CSV (*.csv)"}
        path, _ = QFileDialog.getSaveFileName(self, "Export heatmap", "", filters[kind])
        if not path:
            return
        try:
            (self.heatmap.export_png if kind == "png" else self.heatmap.export_csv)(path)
        except Exception as e:  # an unwritable folder and the like: said, not lost
            self._ctx.notifier.report(e, f"Export {kind.upper()}")
        else:
            self._ctx.notifier.info(f"Export {kind.upper()}", f"saved {path}")
