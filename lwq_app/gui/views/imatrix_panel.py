"""The Importance step's top box: where the imatrix comes from (collect on a text, resume,
or load a file) and what the project has. It holds no job: the page runs them and calls
``refresh`` with what it knows; the buttons only emit ``collect_requested`` (resume or not)
and ``load_requested`` (a path the user chose)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.hub import cached
from lwq_app.core.jobs.resources import CALIBRATION_TEXT
from lwq_app.core.results.workspace import ProjectState

#: the sources of calibration text
BUNDLED, TEXT_FILE, HUB = "bundled", "file", "hub"
#: the core's catalog name of eaddario's calibration set
HUB_DATASET = "calibration"
#: chunks between two resume checkpoints
SAVE_EVERY = 5
QUICK_CHUNKS = 2


@functools.cache
def _pyarrow_installed() -> bool:
    """Asked once a run: the search walks sys.path (27 ms a call, three calls on every
    model open, on the GUI thread)."""
    return importlib.util.find_spec("pyarrow") is not None


def hub_available() -> bool:
    """eaddario's set can be used: pyarrow is installed (``lwq[hub]``) or the text is cached."""
    return _pyarrow_installed() or cached(HUB_DATASET) is not None


class ImatrixPanel(QGroupBox):
    """Source, chunks, Collect / Resume / Load, and the project's imatrix."""

    collect_requested = Signal(bool)  # resume
    load_requested = Signal(str)  # path of an imatrix file

    def __init__(self, quick: bool, parent: QWidget | None = None) -> None:
        super().__init__("Importance matrix", parent)
        self.source = QComboBox()
        self.source.addItem("Bundled calibration text (lwq)", BUNDLED)
        self.source.addItem("A text file…", TEXT_FILE)
        self.source.addItem("eaddario/imatrix-calibration (Hugging Face Hub)", HUB)
        self.source.setToolTip("The text run through the model to measure its activations")
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText("A UTF-8 text file")
        self.file_edit.setToolTip("The calibration text file to collect on")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setToolTip("Choose the calibration text file")
        self.browse_button.clicked.connect(self._browse_text)
        self.chunks = QSpinBox()
        self.chunks.setRange(0, 100_000)
        self.chunks.setSpecialValueText("all")
        self.chunks.setSuffix(" chunks")
        self.chunks.setValue(QUICK_CHUNKS if quick else 0)
        self.chunks.setToolTip("How many 512-token chunks of the text to run (all: the whole text)")
        self.collect_button = QPushButton("Collect")
        self.collect_button.setToolTip("Collect the imatrix into the project (Cancel: job panel)")
        self.collect_button.clicked.connect(lambda: self.collect_requested.emit(False))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(
            f"Continue an interrupted collection from its checkpoint (saved every {SAVE_EVERY} "
            "chunks), with the same text and chunks as before"
        )
        self.resume_button.clicked.connect(lambda: self.collect_requested.emit(True))
        self.load_button = QPushButton("Load imatrix…")
        self.load_button.setToolTip("Use an imatrix file of this model (GGUF or legacy .dat)")
        self.load_button.clicked.connect(self._browse_imatrix)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setToolTip("The project's imatrix file and the text it was collected on")

        row = QHBoxLayout()
        for w in (self.source, self.file_edit, self.browse_button, self.chunks):
            row.addWidget(w)
        row.addWidget(self.collect_button)
        row.addWidget(self.resume_button)
        row.addStretch(1)
        row.addWidget(self.load_button)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.note)
        lay.addWidget(self.status)

    def chosen(self) -> str:
        return str(self.source.currentData())

    def text_file(self) -> Path | None:
        text = self.file_edit.text().strip()
        return Path(text) if text else None

    def refresh(
        self, *, is_open: bool, busy: bool, checkpoint: bool, state: ProjectState | None
    ) -> None:
        """Enable what can be done now and say what the project has."""
        source = self.chosen()
        hub_ok = hub_available()
        can_collect = is_open and not busy and (source != HUB or hub_ok)
        self.collect_button.setEnabled(can_collect)
        self.resume_button.setEnabled(can_collect and checkpoint)
        self.load_button.setEnabled(is_open and not busy)
        for w in (self.source, self.chunks, self.file_edit, self.browse_button):
            w.setEnabled(not busy)
        self.file_edit.setVisible(source == TEXT_FILE)
        self.browse_button.setVisible(source == TEXT_FILE)
        if source == HUB:
            note = (
                "eaddario's calibration set is downloaded from the Hugging Face Hub once "
                "(it needs the network) and read with pyarrow, the lwq[hub] extra."
            )
            if not hub_ok:
                note += " pyarrow is not installed: pip install 'lwq[hub]' to use it."
        elif source == TEXT_FILE:
            note = "Any UTF-8 text; like llama-imatrix, it is cut into 512-token chunks."
        else:
            note = f"lwq's own calibration text ({CALIBRATION_TEXT.name}, see its ATTRIBUTION)."
        self.note.setText(note)
        if state is None:
            self.status.setText("Open a model first (the Model step).")
        elif state.imatrix is None:
            self.status.setText("No imatrix yet: collect one, or load one made for this model.")
        else:
            dataset = f", collected on {state.imatrix_dataset}" if state.imatrix_dataset else ""
            self.status.setText(f"Imatrix: {state.imatrix}{dataset}")

    def _browse_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Calibration text", "", "Text (*.txt);;All (*)")
        if path:
            self.file_edit.setText(path)

    def _browse_imatrix(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load imatrix", "", "imatrix files (*.gguf *.dat);;All files (*)"
        )
        if path:
            self.load_requested.emit(path)
