"""Auto's controls: the budget the automatic plan must meet, taken from the target or typed.

The budget is the core's ``BudgetSpec``: the project's target (memory for the weights once
llama.cpp's KV cache and compute buffers at its context are counted, ``MemoryBudget
.from_target``), a size on disk (``SizeBudget.parse``: ``98MB``, ``3.6GiB``), a tensor-data
size, or bits per weight. Parsing is the core's, so a malformed value gets the core's message.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from lwq_app.core.evaluate import TargetSpec
from lwq_app.core.jobs import LwqError
from lwq_app.core.optimize import BpwBudget, BudgetSpec, MemoryBudget, SizeBudget

TARGET, FILE_SIZE, DATA_SIZE, BPW = "target", "file", "data", "bpw"
_KINDS = (
    (TARGET, "Fit the target", "The weights fit the target's memory after the KV cache and "
     "compute buffers at its context (the Target step)"),
    (FILE_SIZE, "File size", "The GGUF file's size on disk, e.g. 98MB or 3.6GiB"),
    (DATA_SIZE, "Tensor data", "Bytes of tensor data only (the file without its metadata)"),
    (BPW, "Bits per weight", "Tensor-data bits per weight over all weights, e.g. 4.5"),
)  # fmt: skip
_PLACEHOLDER = {TARGET: "", FILE_SIZE: "e.g. 98MB", DATA_SIZE: "e.g. 96MB", BPW: "e.g. 4.5"}


class AutoPanel(QWidget):
    """Budget kind, value and the Auto button; ``run_requested(BudgetSpec)``."""

    run_requested = Signal(object)  # BudgetSpec
    invalid = Signal(object)  # the core's exception for a malformed value

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = QComboBox()
        for key, label, tip in _KINDS:
            self.kind.addItem(label, key)
            self.kind.setItemData(self.kind.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.kind.setToolTip("What the automatic plan's budget is")
        self.value = QLineEdit()
        self.value.setMaximumWidth(120)
        self.value.returnPressed.connect(self.run)
        self.button = QPushButton("Auto")
        self.button.setObjectName("auto_button")
        self.button.setToolTip(
            "The lowest predicted-KLD plan within the budget (a job: the sensitivity is "
            "measured once per model and imatrix, then cached)"
        )
        self.button.clicked.connect(self.run)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Auto for"))
        lay.addWidget(self.kind)
        lay.addWidget(self.value)
        lay.addWidget(self.button)
        self.target: TargetSpec | None = None
        self.kind.currentIndexChanged.connect(self._update)
        self._update()

    def set_target(self, target: TargetSpec | None) -> None:
        self.target = target
        self._update()

    def set_kind(self, key: str, value: str = "") -> None:
        self.kind.setCurrentIndex(self.kind.findData(key))
        self.value.setText(value)

    def _update(self) -> None:
        key = self.kind.currentData()
        self.value.setVisible(key != TARGET)
        self.value.setPlaceholderText(_PLACEHOLDER[key])
        self.button.setEnabled(key != TARGET or self.target is not None)
        if key == TARGET and self.target is None:
            self.button.setToolTip("Choose a target in the Target step first")

    def budget(self) -> BudgetSpec:
        """The budget as the core states it; the core's ``InputError`` for a bad value."""
        key, text = self.kind.currentData(), self.value.text().strip()
        if key == TARGET:
            assert self.target is not None
            return MemoryBudget.from_target(self.target)
        if key == FILE_SIZE:
            return SizeBudget.parse(text)
        if key == DATA_SIZE:
            return SizeBudget.parse(text, on_disk=False)
        return BpwBudget.parse(text)

    def run(self) -> None:
        try:
            spec = self.budget()
        except LwqError as e:  # the core's message goes to the notifier
            self.invalid.emit(e)
            return
        self.run_requested.emit(spec)
