"""Where the quantized variant goes: an output folder and a file name.

The dialog only collects the path. Everything that can refuse it — an unwritable folder, too
little free disk for the plan's predicted file, a name that would overwrite the source — is
the quantize job's own check (``plan.quantize.validate_job``), run before any native work, so
a refused output gets the core's message and no file is written.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from lwq_app.core.jobs import format_size


class QuantizeDialog(QDialog):
    """Folder, name and the predicted size; ``output()`` once accepted."""

    def __init__(
        self, folder: Path, name: str, predicted_bytes: int | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Quantize the plan")
        self.folder = QLineEdit(str(folder))
        self.folder.setObjectName("quantize_folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.name = QLineEdit(name)
        self.name.setObjectName("quantize_name")
        form = QFormLayout(self)
        form.addRow("Folder", row)
        form.addRow("File name", self.name)
        size = "not known yet" if predicted_bytes is None else format_size(predicted_bytes)
        form.addRow("Predicted size", QLabel(size))
        note = QLabel(
            "The file is written beside a temporary name and renamed when complete: a "
            "cancelled or failed run leaves nothing."
        )
        note.setWordWrap(True)
        form.addRow(note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Quantize")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(560, self.sizeHint().height())

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Output folder", self.folder.text())
        if d:
            self.folder.setText(d)

    def output(self) -> Path:
        name = self.name.text().strip()
        if name and not name.lower().endswith(".gguf"):
            name += ".gguf"
        return Path(self.folder.text().strip()).expanduser() / name
