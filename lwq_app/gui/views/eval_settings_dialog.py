"""The project's one evaluation setting, edited: text, context, chunks; task files and
counts; bench tests, repetitions and depth; threads and GPU layers.

The dialog only collects fields: the core validates them (``EvalSettings.from_json``, whose
messages name the field) and the page saves the result as ``state.eval_settings`` through
the session. A task file that is missing can be fetched from the Hub (``hub_task_file``, a
job in the worker bridge, cached by the core); the offer says what the file is and how large,
and offline (``HF_HUB_OFFLINE``) it says that it cannot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.evaluate.multiple_choice import BENCHMARKS
from lwq_app.core.hub.datasets import dataset, offline
from lwq_app.core.hub.defaults import HUB_TASKS, TaskFile, hub_task_file
from lwq_app.core.jobs import LwqError
from lwq_app.core.results.eval_settings import DEFAULT_TASKS, EvalSettings

from ..context import AppContext


def fetch_offer(benchmark: str) -> str:
    """What fetching ``benchmark``'s task file means, in words (what, how large, from where)."""
    ds = dataset(HUB_TASKS[benchmark])
    size = f", {ds.size}" if ds.size else ""
    return f"{ds.description}{size}, from the Hugging Face Hub ({ds.repo}); kept in lwq's cache"


def offer_fetch(
    ctx: AppContext, parent: QWidget, benchmark: str, fetched: Callable[[Path], None]
) -> bool:
    """Ask, then fetch ``benchmark``'s task file as a job; ``fetched(path)`` when it is there.
    Offline it says so and fetches nothing. True when a fetch was started."""
    title = f"Fetch the {benchmark} task file"
    if offline():
        ctx.notifier.warn(
            title, f"offline (HF_HUB_OFFLINE is set): cannot fetch {fetch_offer(benchmark)}"
        )
        return False
    answer = QMessageBox.question(
        parent,
        title,
        f"Fetch {fetch_offer(benchmark)}?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Yes,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return False

    def done(tf: TaskFile) -> None:
        fetched(tf.path)

    ctx.runner.submit(title, hub_task_file, benchmark, on_result=done)
    return True


def _spin(low: int, high: int, value: int, tip: str, special: str = "") -> QSpinBox:
    s = QSpinBox()
    s.setRange(low, high)
    s.setValue(value)
    s.setToolTip(tip)
    if special:
        s.setSpecialValueText(special)
    return s


class _TaskRow:
    """One benchmark's line: on/off, task file, count, browse and fetch."""

    def __init__(self, dialog: EvalSettingsDialog, name: str, grid: QGridLayout, row: int):
        self.name = name
        self.on = QCheckBox(name, dialog)
        self.path = QLineEdit(dialog)
        self.path.setPlaceholderText("task file")
        self.count = _spin(0, 1_000_000, DEFAULT_TASKS, "Tasks scored (0 = all)", "all")
        self.browse = QPushButton("…", dialog)
        self.browse.setToolTip(f"Choose the {name} task file")
        self.fetch = QPushButton("Fetch…", dialog)
        self.fetch.setToolTip(f"Fetch {fetch_offer(name)}")
        self.browse.setFixedWidth(32)
        self.path.setMinimumWidth(260)
        for j, w in enumerate((self.on, self.path, self.count, self.browse, self.fetch)):
            grid.addWidget(w, row, j)
        self.browse.clicked.connect(lambda: dialog.browse_task(self))
        self.fetch.clicked.connect(lambda: dialog.fetch_task(self))
        self.path.textChanged.connect(lambda _t: self.update())

    def update(self) -> None:
        text = self.path.text().strip()
        self.fetch.setEnabled(not text or not Path(text).is_file())

    def to_json(self) -> dict[str, Any] | None:
        if not self.on.isChecked():
            return None
        return {"name": self.name, "path": self.path.text().strip(), "n_tasks": self.count.value()}


class EvalSettingsDialog(QDialog):
    """Edit an ``EvalSettings``; ``settings()`` after Ok is the core-validated result."""

    def __init__(self, ctx: AppContext, settings: EvalSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Evaluation settings")
        self.setMinimumWidth(640)
        self._ctx = ctx
        self._result: EvalSettings | None = None
        s = settings
        self.text = QLineEdit(str(s.text), self)
        browse = QPushButton("…", self)
        browse.setFixedWidth(32)
        browse.setToolTip("Choose the evaluation text")
        browse.clicked.connect(self._browse_text)
        text_row = QHBoxLayout()
        text_row.addWidget(self.text, 1)
        text_row.addWidget(browse)
        self.n_ctx = _spin(8, 131072, s.n_ctx, "Tokens per chunk (llama-perplexity -c)")
        self.n_chunks = _spin(0, 1_000_000, s.n_chunks or 0, "Chunks evaluated (0 = all)", "all")
        quality = QFormLayout()
        quality.addRow("Text", text_row)
        quality.addRow("Context", self.n_ctx)
        quality.addRow("Chunks", self.n_chunks)
        qbox = QGroupBox("PPL and KLD against F16", self)
        qbox.setLayout(quality)

        tgrid = QGridLayout()
        given = {t.name: t for t in s.tasks}
        order = [*given, *(n for n in BENCHMARKS if n not in given)]  # the setting's order first
        self.tasks = [_TaskRow(self, name, tgrid, i) for i, name in enumerate(order)]
        for row in self.tasks:
            t = given.get(row.name)
            row.on.setChecked(t is not None)
            if t is not None:
                row.path.setText(str(t.path))
                row.count.setValue(t.n_tasks)
            row.update()
        self.task_ctx = _spin(16, 131072, s.task_ctx, "Context of the task scorer")
        tgrid.addWidget(QLabel("Task context", self), len(self.tasks), 0)
        tgrid.addWidget(self.task_ctx, len(self.tasks), 2)
        tgrid.setColumnStretch(1, 1)
        tbox = QGroupBox("Multiple-choice benchmarks", self)
        tbox.setLayout(tgrid)

        pp = next((p for p, g in s.bench_tests if g == 0), 0)
        tg = next((g for p, g in s.bench_tests if p == 0), 0)
        self.pp = _spin(0, 65536, pp, "Prompt tokens of the pp test (0 = none)", "none")
        self.tg = _spin(0, 65536, tg, "Generated tokens of the tg test (0 = none)", "none")
        self.reps = _spin(1, 1000, s.bench_repetitions, "Timed runs per test (llama-bench -r)")
        self.depth_spin = _spin(
            0, 1_000_000, max(s.bench_depths), "Also test after this many tokens (-d)", "none"
        )
        self.threads = _spin(0, 1024, s.threads, "Threads (0 = llama.cpp's default)", "default")
        self.gpu = _spin(0, 100_000, s.gpu_layers, "Layers offloaded to the GPU (0 = CPU)")
        bench = QFormLayout()
        bench.addRow("pp (prompt tokens)", self.pp)
        bench.addRow("tg (generated tokens)", self.tg)
        bench.addRow("Repetitions", self.reps)
        bench.addRow("Depth", self.depth_spin)
        bench.addRow("Threads", self.threads)
        bench.addRow("GPU layers", self.gpu)
        bbox = QGroupBox("Speed (llama-bench)", self)
        bbox.setLayout(bench)

        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #D55E00")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        for w in (qbox, tbox, bbox, self.error, buttons):
            lay.addWidget(w)

    def to_json(self) -> dict[str, Any]:
        tests = [[self.pp.value(), 0]] if self.pp.value() else []
        tests += [[0, self.tg.value()]] if self.tg.value() else []
        return {
            "text": self.text.text().strip(),
            "n_ctx": self.n_ctx.value(),
            "n_chunks": self.n_chunks.value() or None,
            "tasks": [j for row in self.tasks if (j := row.to_json()) is not None],
            "task_ctx": self.task_ctx.value(),
            "bench_tests": tests,
            "bench_repetitions": self.reps.value(),
            "bench_depths": sorted({0, self.depth_spin.value()}),
            "threads": self.threads.value(),
            "gpu_layers": self.gpu.value(),
        }

    def settings(self) -> EvalSettings:
        """The fields as the core reads them (``InputError`` naming a bad field)."""
        return EvalSettings.from_json(self.to_json(), "evaluation settings")

    def accept(self) -> None:
        try:
            settings = self.settings()
        except LwqError as e:
            self.error.setText(str(e))
            return
        if not settings.text.is_file():
            self.error.setText(f"{settings.text}: no such text file")
            return
        self._result = settings
        super().accept()

    def result_settings(self) -> EvalSettings | None:
        return self._result

    # -- files -------------------------------------------------------------------------------
    def _browse_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Evaluation text", self.text.text())
        if path:
            self.text.setText(path)

    def browse_task(self, row: _TaskRow) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"{row.name} task file", row.path.text())
        if path:
            row.path.setText(path)
            row.on.setChecked(True)

    def fetch_task(self, row: _TaskRow) -> None:
        def fetched(path: Path) -> None:
            row.path.setText(str(path))
            row.on.setChecked(True)

        offer_fetch(self._ctx, self, row.name, fetched)
