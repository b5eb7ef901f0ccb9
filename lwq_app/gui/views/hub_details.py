"""The details of the selected Hub result: what a download would take, and its card.

Shown from the core's ``RepoDetails`` (fetched on selection, never for every result): the
repo's files with their sizes, which of them ``select_files`` picks for a download (and why
the rest are skipped), the estimate from its config, and the card. The Download button and
the conversion type belong here, beside what they act on.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.hub.search import RepoDetails
from lwq_app.core.jobs import format_size

from ..hub_controller import OUT_TYPES


def _size(n: int | None) -> str:
    return "" if n is None else format_size(n, binary=True)


def selected_names(details: RepoDetails) -> set[str]:
    """The files the core's selection would download."""
    return set(details.selection.files)


class HubDetailsView(QWidget):
    """The selected repo: summary, files (picked or skipped), card; Download."""

    download_clicked = Signal(str)  # repo

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.details: RepoDetails | None = None
        self.title = QLabel("Select a result to see its files and card.")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("QLabel { font-style: italic; }")

        self.files = QTableWidget(0, 3)
        self.files.setHorizontalHeaderLabels(["File", "Size", "Download"])
        self.files.setToolTip("The repo's files; the ones marked are what a download takes")
        self.files.verticalHeader().hide()
        self.files.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.files.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.card = QTextBrowser()
        self.card.setOpenExternalLinks(True)
        self.card.setToolTip("The repo's model card (README.md)")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.files, "Files")
        self.tabs.addTab(self.card, "Card")

        self.type_combo = QComboBox()
        self.type_combo.addItems(OUT_TYPES)
        self.type_combo.setToolTip(
            "The GGUF a safetensors download is converted to (llama.cpp's converter); "
            "F16 is what lwq's quantization starts from"
        )
        self.download_button = QPushButton("Download and open")
        self.download_button.setToolTip(
            "Download the picked files (resumable, sha256-checked), convert safetensors to "
            "GGUF, and open the model in its project"
        )
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self._download)
        self.download_total = QLabel()
        actions = QHBoxLayout()
        actions.addWidget(self.download_total, 1)
        actions.addWidget(QLabel("Convert to:"))
        actions.addWidget(self.type_combo)
        self.delete_source = QCheckBox("then delete the safetensors")
        self.delete_source.setToolTip(
            "Once the GGUF is written, delete the downloaded safetensors from the Hugging Face "
            "cache (a 7B model's take ~15 GB); download them again to convert to another type"
        )
        actions.addWidget(self.delete_source)
        actions.addWidget(self.download_button)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.summary)
        lay.addWidget(self.note)
        lay.addWidget(self.tabs, 1)
        lay.addLayout(actions)

    def clear(self, text: str = "Select a result to see its files and card.") -> None:
        self.details = None
        self.title.setText(text)
        self.summary.clear()
        self.note.clear()
        self.files.setRowCount(0)
        self.card.clear()
        self.download_total.clear()
        self.download_button.setEnabled(False)

    def show_details(self, d: RepoDetails) -> None:
        self.details = d
        gated = " · gated: accept its conditions on the Hub and log in first" if d.gated else ""
        self.title.setText(f"<b>{d.repo}</b>{gated}")
        est = d.estimate
        parts = []
        if d.parameters:
            parts.append(f"{d.parameters:,} parameters")
        if d.license:
            parts.append(f"license {d.license}")
        if est.f16_bytes is not None:
            parts.append(f"F16 ≈ {_size(est.f16_bytes)} (estimate)")
        self.summary.setText(" · ".join(parts))
        sel = d.selection
        self.note.setText(sel.note or "")
        self.note.setVisible(bool(sel.note))
        picked = selected_names(d)
        self.files.setRowCount(len(d.files))
        for i, f in enumerate(d.files):
            cells = (f.name, _size(f.size), "✓" if f.name in picked else "")
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if j == 0 and f.sha256:
                    item.setToolTip(f"LFS sha256 {f.sha256}")
                self.files.setItem(i, j, item)
        total = sum(f.size or 0 for f in d.files if f.name in picked)
        files = f"{len(picked)} file{'s' if len(picked) != 1 else ''}"
        self.download_total.setText(
            f"Download: {files}, {_size(total)} ({sel.kind})" if picked else ""
        )
        self.type_combo.setEnabled(sel.kind == "safetensors")
        self.delete_source.setEnabled(sel.kind == "safetensors")
        self.card.setMarkdown(d.card or "*This repo has no model card.*")
        self.download_button.setEnabled(bool(picked) and sel.kind != "none")

    def picked_rows(self) -> list[str]:
        """The file names marked for download, as shown."""
        rows = [
            (self.files.item(i, 0), self.files.item(i, 2)) for i in range(self.files.rowCount())
        ]
        return [name.text() for name, mark in rows if name and mark and mark.text()]

    def _download(self) -> None:
        if self.details is not None:
            self.download_clicked.emit(self.details.repo)
