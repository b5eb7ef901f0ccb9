"""The Model step: open a GGUF, see what is in it (summary, type mix, every tensor).

Everything shown comes from the core: ``summarize`` for the summary and the type mix, the
inventory for the table. While the project opens (hashing, and for a quantized file its F16
upcast) the view reads the file's header in a quick job of its own, so the user sees what
they opened — and why a quantized file is upcast first — before the long job ends.

The Hub button swaps the page for the Hub pane (``hub_pane``: search, details, download,
convert); it is built on first use, and the page comes back when a model starts opening.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.jobs import CancelToken, LwqError, Phase, ProgressSink, format_size
from lwq_app.core.modelfile import ModelInfo, open_model
from lwq_app.core.modelfile.summary import ModelSummary, summarize

from ..context import AppContext
from ..worker import Job
from .tensor_table import TensorFilterProxy, TensorTableModel

if TYPE_CHECKING:
    from .hub_pane import HubPane

_PHASE_TEXT = {
    Phase.HASH: "Hashing the weights",
    Phase.UPCAST: "Upcasting to F16",
    Phase.LOAD: "Reading",
    Phase.WRITE: "Writing",
    Phase.VERIFY: "Checking",
}


def _read_source(
    path: Path, *, progress: ProgressSink, cancel: CancelToken
) -> tuple[ModelInfo, ModelSummary] | None:
    """The file being opened and its summary (worker thread), or None if it cannot be read:
    the open job fails on the same file and reports it, so it is not reported twice."""
    try:
        info = open_model(path)
        return info, summarize(info)
    except LwqError:
        return None


#: pixels added to a column's widest text (cell margins, the sort arrow)
COLUMN_PADDING = 28


class ModelView(QWidget):
    """Open a model and inspect it: summary, type mix and a sortable, filterable tensor table."""

    done_changed = Signal(bool)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._opening: Path | None = None
        self._rows: dict[str, str] = {}

        self.open_button = QPushButton("Open GGUF…")
        self.open_button.setToolTip("Open a local GGUF model (a split model: its first file)")
        self.open_button.clicked.connect(self.choose_file)
        self.hub_button = QPushButton("Hugging Face Hub / safetensors…")
        self.hub_button.setToolTip(
            "Search the Hub, download a model (safetensors are converted to GGUF) and open it"
        )
        self.hub_button.clicked.connect(self.show_hub)
        self._hub: HubPane | None = None
        self.path_label = QLabel("No model open. Open a GGUF file, or drop one on the window.")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.hub_button)
        top.addWidget(self.path_label, 1)

        # the quantized-source explanation and the open job's progress
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.banner.setStyleSheet(
            "QLabel { padding: 8px; border-left: 4px solid #E69F00; font-size: 11pt; }"
        )
        self.banner.setToolTip("Why lwq works from a float copy of a quantized file")
        self.banner.hide()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setToolTip("Opening the project: hashing, and an F16 upcast if needed")
        self.progress.hide()

        self.summary_form = QFormLayout()
        self.summary_form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        summary_box = QGroupBox("Summary")
        summary_box.setLayout(self.summary_form)

        self.mix_table = QTableWidget(0, 4)
        self.mix_table.setHorizontalHeaderLabels(["Type", "Tensors", "Size", "Share"])
        self.mix_table.setToolTip("The ggml types of this file: tensors, bytes, share of the bytes")
        self.mix_table.verticalHeader().hide()
        self.mix_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        mix_header = self.mix_table.horizontalHeader()
        mix_header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        mix_header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.mix_table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
        self.mix_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        mix_box = QGroupBox("Type mix")
        QVBoxLayout(mix_box).addWidget(self.mix_table)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(summary_box)
        left_layout.addWidget(mix_box)
        left_layout.addStretch(1)

        self.table_model = TensorTableModel(self)
        self.proxy = TensorFilterProxy(self)
        self.proxy.setSourceModel(self.table_model)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter tensors by name, kind or type (e.g. ffn_down)")
        self.filter_edit.setToolTip("Show only the tensors whose name, kind or type contain this")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter)
        self.count_label = QLabel()
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the file's order first
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setToolTip("Every tensor of the file; click a header to sort")
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        filter_row = QHBoxLayout()
        filter_row.addWidget(self.filter_edit, 1)
        filter_row.addWidget(self.count_label)
        right_layout.addLayout(filter_row)
        right_layout.addWidget(self.table, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([420, 680])

        self.local = QWidget()
        local = QVBoxLayout(self.local)
        local.setContentsMargins(0, 0, 0, 0)
        local.addLayout(top)
        local.addWidget(self.banner)
        local.addWidget(self.progress)
        local.addWidget(splitter, 1)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.local)
        layout = QVBoxLayout(self)
        layout.addWidget(self.stack)

        session = ctx.session
        session.opening.connect(self._on_opening)
        session.opened.connect(self._on_opened)
        session.open_failed.connect(self._on_open_failed)
        session.closed.connect(self._on_closed)
        ctx.runner.job_progressed.connect(self._on_job_progressed)
        if session.is_open:
            self._on_opened()

    # -- for the window and the tests ---------------------------------------------------
    def is_done(self) -> bool:
        return self._ctx.session.is_open

    def summary_rows(self) -> dict[str, str]:
        """The summary as shown: label → text."""
        return dict(self._rows)

    def choose_file(self) -> None:
        start = str(self._ctx.settings.value("model/last_folder", "", str))
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a GGUF model", start, "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self._ctx.settings.setValue("model/last_folder", str(Path(path).parent))
            self._ctx.session.open(path)

    # -- the Hub pane -----------------------------------------------------------------------
    @property
    def hub_pane(self) -> HubPane:
        """The Hub pane (built, with its imports, on first use)."""
        if self._hub is None:
            from .hub_pane import HubPane

            self._hub = HubPane(self._ctx, self)
            self._hub.back_clicked.connect(lambda: self.stack.setCurrentWidget(self.local))
            self.stack.addWidget(self._hub)
        return self._hub

    def show_hub(self) -> None:
        self.stack.setCurrentWidget(self.hub_pane)

    def choose_safetensors_folder(self) -> None:
        """Pick a local transformers folder; it is converted (the Hub pane's type) and opened."""
        start = str(self._ctx.settings.value("model/last_folder", "", str))
        folder = QFileDialog.getExistingDirectory(self, "Open a safetensors folder", start)
        if folder:
            self.show_hub()
            self.hub_pane.convert_folder(Path(folder))

    # -- opening --------------------------------------------------------------------------
    def _on_opening(self, path: Path) -> None:
        self.stack.setCurrentWidget(self.local)
        self._opening = Path(path)
        self.path_label.setText(f"Opening {self._opening.name}…")
        self.progress.setValue(0)
        self.progress.setFormat("Opening…")
        self.progress.show()
        if self._opening.is_file():
            self._ctx.runner.submit(
                f"Read {self._opening.name}",
                _read_source,
                self._opening,
                on_result=partial(self._on_source_read, self._opening),
            )

    def _on_source_read(self, path: Path, read: tuple[ModelInfo, ModelSummary] | None) -> None:
        if read is None or path != self._opening:
            return  # the open job reports an unreadable file; or another file was opened since
        info, summary = read
        self._show(info, summary, base_note=None)
        self._explain(summary)

    def _on_job_progressed(self, job: Job) -> None:
        if job is not self._ctx.session.open_job or job.progress is None:
            return
        p = job.progress
        what = _PHASE_TEXT.get(p.phase, p.phase.value.capitalize())
        eta = "" if job.seconds_left is None else f" — about {job.seconds_left:.0f} s left"
        self.progress.setValue(int(p.position * 1000))
        self.progress.setFormat(f"{what} {p.item} %p%{eta}".replace("  ", " "))

    def _on_opened(self) -> None:
        session = self._ctx.session
        self._opening = None
        self.progress.hide()
        source, result = session.source, session.result
        if source is None or result is None:
            return
        summary = summarize(source)
        base_note = None
        if session.model is not None and session.model.paths != source.paths:
            base_note = f"working from its F16 upcast, kept in the project at {session.model.path}"
        self._show(source, summary, base_note)
        self._explain(summary)
        self.path_label.setText(str(source.path))
        self.done_changed.emit(True)

    def _on_open_failed(self, _path: Path) -> None:
        self._opening = None
        self.progress.hide()
        if self._ctx.session.is_open:
            self._on_opened()  # the project that was open stays open
        else:
            self._clear()

    def _on_closed(self) -> None:
        self._clear()
        self.done_changed.emit(False)

    # -- showing --------------------------------------------------------------------------
    def _clear(self) -> None:
        self._rows = {}
        self._fill_form()
        self.mix_table.setRowCount(0)
        self.table_model.set_tensors(())
        self.banner.hide()
        self.path_label.setText("No model open. Open a GGUF file, or drop one on the window.")
        self._update_count()

    def _show(self, info: ModelInfo, s: ModelSummary, base_note: str | None) -> None:
        files = f"{s.n_files} files, " if s.n_files > 1 else ""
        rows = {
            "Name": s.name,
            "Architecture": s.architecture,
            "Parameters": f"{s.n_params:,}",
            "Layers": str(s.n_layer),
            "Attention heads": str(s.n_head),
            "KV heads": f"{s.n_head_kv} (GQA {s.n_gqa})" if s.n_gqa > 1 else str(s.n_head_kv),
            "Experts": (
                f"{s.n_expert} ({s.n_expert_used} used per token)" if s.n_expert else "none"
            ),
            "Context length": f"{s.context_length:,}",
            "Vocabulary": f"{s.n_vocab:,}",
            "File size": f"{files}{format_size(s.file_size, binary=True)}",
            "File type": s.file_type_name,
            "Embeddings": (
                "tied (the output reuses token_embd)" if s.tied_embeddings else "separate output"
            ),
        }
        if base_note:
            rows["Project base"] = base_note
        self._rows = rows
        self._fill_form()
        self.mix_table.setRowCount(len(s.type_mix))
        for i, m in enumerate(s.type_mix):
            cells = (m.type, str(m.n_tensors), format_size(m.bytes, binary=True),
                     f"{m.share:.1%}")  # fmt: skip
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.mix_table.setItem(i, j, item)
        if self.table_model.tensors != info.tensors:  # opened after read: the same tensors
            self.table_model.set_tensors(info.tensors)
            self._size_columns()
        self._update_count()

    def _size_columns(self) -> None:
        """Columns as wide as their widest text, measured with the font, not cell by cell:
        ``resizeColumnsToContents`` asked the model for every cell and held the GUI thread
        750 ms on SmolLM2's 272 rows."""
        fm = self.table.fontMetrics()
        header = self.table.horizontalHeader()
        for col, text in enumerate(self.table_model.widest_texts()):
            header.resizeSection(col, fm.horizontalAdvance(text) + COLUMN_PADDING)

    def _explain(self, s: ModelSummary) -> None:
        """The banner says why a quantized file is upcast; a float file needs no banner."""
        self.banner.setText(f"<b>{s.file_type_name} file.</b> {s.explanation}")
        self.banner.setVisible(bool(s.explanation))

    def _fill_form(self) -> None:
        while self.summary_form.rowCount():
            self.summary_form.removeRow(0)
        for label, text in self._rows.items():
            value = QLabel(text)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.summary_form.addRow(f"{label}:", value)

    def _on_filter(self, text: str) -> None:
        self.proxy.set_filter_text(text)
        self._update_count()

    def _update_count(self) -> None:
        n, total = self.proxy.rowCount(), self.table_model.rowCount()
        self.count_label.setText(f"{n} of {total} tensors" if n != total else f"{total} tensors")
