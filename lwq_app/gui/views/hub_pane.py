"""The Model step's Hub pane: search the Hub, see a result's details, download and open it.

The pane lays out what the ``HubController`` gets from the core — the search results with
their estimated sizes and fits (``search_models``), one result's files and card
(``repo_details``), the partial downloads (``pending_downloads``) — and routes the clicks
back to it. Download, convert and open run as jobs on the window's bridge: their rows in the
job panel have the progress and Cancel, and the pane's own bar repeats the running one's.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelection, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.hub.download import DownloadResult
from lwq_app.core.hub.search import SORTS, RepoDetails, SearchRequest, SearchResult
from lwq_app.core.hub.transfer import PendingDownload
from lwq_app.core.jobs import format_size, one_line

from ..context import AppContext
from ..hub_controller import HubController, TransferReadout
from ..job_panel import STEPS
from ..worker import Job
from .hub_details import HubDetailsView
from .hub_results_model import HubResultsModel, HubResultsProxy

GIB = 1024**3
#: the format filter's choices: label -> SearchRequest.format
FORMATS = {"Any format": "any", "Has safetensors": "safetensors", "Has GGUF": "gguf"}
SORT_LABELS = {"downloads": "Most downloaded", "likes": "Most liked",
               "trending": "Trending", "updated": "Recently updated"}  # fmt: skip


class HubPane(QWidget):
    """Search → select → details → Download (→ Convert) → the model opens."""

    back_clicked = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.controller = HubController(ctx, self)
        self._readout = TransferReadout()

        self.query = QLineEdit()
        self.query.setPlaceholderText("Search the Hub (e.g. SmolLM2, Qwen2.5 7B Instruct)")
        self.query.setToolTip("Words in the repo's name")
        self.query.setClearButtonEnabled(True)
        self.query.returnPressed.connect(self.search)
        self.author = QLineEdit()
        self.author.setPlaceholderText("author")
        self.author.setToolTip("Only this user's or organization's models")
        self.author.setMaximumWidth(140)
        self.format_combo = QComboBox()
        self.format_combo.addItems(list(FORMATS))
        self.format_combo.setToolTip("Only repos with these weights")
        self.sort_combo = QComboBox()
        for key in SORTS:
            self.sort_combo.addItem(SORT_LABELS.get(key, key), key)
        self.sort_combo.setToolTip("The order of the results")
        self.memory_spin = QDoubleSpinBox()
        self.memory_spin.setRange(0, 4096)
        self.memory_spin.setDecimals(1)
        self.memory_spin.setValue(8)
        self.memory_spin.setSuffix(" GiB")
        self.memory_spin.setSpecialValueText("no target")
        self.memory_spin.setToolTip("The memory the model must fit in (weights + KV cache)")
        self.context_spin = QSpinBox()
        self.context_spin.setRange(16, 1 << 20)
        self.context_spin.setValue(4096)
        self.context_spin.setToolTip("Tokens of context the KV cache is sized for")
        self.search_button = QPushButton("Search")
        self.search_button.setToolTip("Search the Hub (text-generation models)")
        self.search_button.clicked.connect(self.search)
        self.login_button = QPushButton("Log in…")
        self.login_button.setToolTip(
            "Paste a Hugging Face access token (read is enough to download gated repos you "
            "were granted); it is checked, then saved where `hf auth login` saves it"
        )
        self.login_button.clicked.connect(self.ask_token)
        self.back_button = QPushButton("Back to the model")
        self.back_button.setToolTip("The model that is open (summary, type mix, tensors)")
        self.back_button.clicked.connect(self.back_clicked)
        form = QHBoxLayout()
        form.addWidget(self.query, 1)
        form.addWidget(self.author)
        form.addWidget(self.format_combo)
        form.addWidget(self.sort_combo)
        form.addWidget(QLabel("Fit in:"))
        form.addWidget(self.memory_spin)
        form.addWidget(QLabel("at"))
        form.addWidget(self.context_spin)
        form.addWidget(self.search_button)
        form.addWidget(self.login_button)
        form.addWidget(self.back_button)

        self.status = QLabel("Search the Hub for a model to quantize.")
        self.status.setWordWrap(True)
        self.results_model = HubResultsModel(self)
        self.proxy = HubResultsProxy(self)
        self.proxy.setSourceModel(self.results_model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the Hub's order first
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setToolTip("Sizes are estimates; select a result for its files and card")
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.selectionModel().selectionChanged.connect(self._on_selected)
        self.details = HubDetailsView(self)
        self.details.download_clicked.connect(self.download)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([820, 420])

        self.pending_list = QListWidget()
        self.pending_list.setToolTip(
            "Downloads that were cancelled or cut off: their bytes are kept"
        )
        self.pending_list.setMaximumHeight(72)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the download from the bytes it has")
        self.resume_button.clicked.connect(self.resume_selected)
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Delete the partial download's bytes")
        self.discard_button.clicked.connect(self.discard_selected)
        self.pending_box = QGroupBox("Partial downloads")
        prow = QHBoxLayout(self.pending_box)
        prow.addWidget(self.pending_list, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.discard_button)
        buttons.addStretch(1)
        prow.addLayout(buttons)
        self.pending_box.hide()

        self.job_label = QLabel()
        self.job_label.setWordWrap(True)
        self.job_bar = QProgressBar()
        self.job_bar.setRange(0, STEPS)
        self.job_bar.setToolTip("The download or conversion running now (also in the Jobs dock)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop it; a download's bytes are kept for Resume")
        self.cancel_button.clicked.connect(self.controller.cancel)
        job_row = QHBoxLayout()
        job_row.addWidget(self.job_label, 1)
        job_row.addWidget(self.job_bar, 2)
        job_row.addWidget(self.cancel_button)
        self._job_widgets = (self.job_label, self.job_bar, self.cancel_button)
        for w in self._job_widgets:
            w.hide()

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(form)
        lay.addWidget(self.status)
        lay.addWidget(split, 1)
        lay.addWidget(self.pending_box)
        lay.addLayout(job_row)

        c = self.controller
        c.searched.connect(self.show_result)
        c.details_fetched.connect(self.show_details)
        c.lookup_failed.connect(self._on_lookup_failed)
        c.logged_in.connect(
            lambda info: self.status.setText(f"Logged in as {info.user} ({info.role} token).")
        )
        c.pending_changed.connect(self.show_pending)
        c.job_changed.connect(self._on_job_changed)
        c.downloaded.connect(self._on_downloaded)
        c.converted.connect(lambda r: self.status.setText(f"Converted to {r.output}; opening it…"))
        ctx.runner.job_progressed.connect(self._on_progress)
        self.pending_list.currentRowChanged.connect(lambda _r: self._update_pending_buttons())
        c.refresh_pending()

    # -- searching ------------------------------------------------------------------------
    def request(self) -> SearchRequest:
        """The search the form describes."""
        gib = self.memory_spin.value()
        return SearchRequest(
            query=self.query.text().strip(),
            format=FORMATS[self.format_combo.currentText()],
            author=self.author.text().strip() or None,
            sort=str(self.sort_combo.currentData()),
            target_memory=round(gib * GIB) if gib > 0 else None,
            context=self.context_spin.value(),
        )

    def search(self) -> Job:
        self.status.setText("Searching…")
        return self.controller.search(self.request())

    def show_result(self, result: SearchResult) -> None:
        self.results_model.set_hits(result.hits)
        self.table.resizeColumnsToContents()  # at most a few hundred short cells
        n = len(result.hits)
        fit = ""
        if result.target_memory is not None:
            fit = (f"; ✓ / ✗: fits {format_size(result.target_memory, binary=True)} "
                   f"with a {result.context}-token KV cache")  # fmt: skip
        self.status.setText(
            f"{n} result{'s' if n != 1 else ''} from {result.endpoint}; sizes are estimates{fit}."
        )
        self.details.clear()

    def _on_selected(self, _sel: QItemSelection, _old: QItemSelection) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        hit = self.results_model.hit(self.proxy.mapToSource(rows[0]).row())
        self.details.clear(f"Fetching the details of {hit.repo}…")
        self.controller.fetch_details(hit.repo)

    def select_repo(self, repo: str) -> None:
        """Select ``repo``'s row (its details are fetched)."""
        for r in range(self.proxy.rowCount()):
            if self.proxy.index(r, 0).data() == repo:
                self.table.selectRow(r)
                return
        raise KeyError(repo)

    def show_details(self, details: RepoDetails) -> None:
        self.details.show_details(details)

    def _on_lookup_failed(self, what: str, exc: BaseException) -> None:
        text = one_line(str(exc))
        if what == "search":
            self.status.setText(f"The search failed: {text}")
        else:
            self.details.clear(f"No details: {text}")

    def ask_token(self) -> Job | None:
        token, ok = QInputDialog.getText(
            self, "Log in to the Hugging Face Hub", "Access token:", QLineEdit.EchoMode.Password
        )
        return self.controller.log_in(token.strip()) if ok and token.strip() else None

    # -- downloading ----------------------------------------------------------------------
    def download(self, repo: str) -> Job | None:
        self.controller.out_type = self.details.type_combo.currentText()
        self.controller.delete_source = self.details.delete_source.isChecked()
        return self.controller.download(repo)

    def convert_folder(self, folder: Path) -> Job | None:
        """Convert a local safetensors folder to the chosen type and open it."""
        self.controller.out_type = self.details.type_combo.currentText()
        return self.controller.convert_folder(folder)

    def _on_downloaded(self, r: DownloadResult) -> None:
        moved = f"{format_size(r.downloaded_bytes, binary=True)} fetched"
        if r.resumed_bytes:
            moved += f", {format_size(r.resumed_bytes, binary=True)} resumed"
        self.status.setText(f"Downloaded {r.repo} at {r.commit[:12]} ({moved}).")
        self.status.setToolTip(str(r.path))

    def _on_job_changed(self, job: Job | None) -> None:
        for w in self._job_widgets:
            w.setVisible(job is not None)
        self.details.download_button.setEnabled(job is None and self.details.details is not None)
        self._update_pending_buttons()
        if job is not None:
            self.job_bar.setValue(0)
            self.job_label.setText(f"{job.title}: starting…")

    def _on_progress(self, job: Job) -> None:
        if job is not self.controller.job:
            return
        if job.progress is not None:
            self.job_bar.setValue(round(job.progress.position * STEPS))
        self.job_label.setText(f"{job.title}: {self._readout.text(job)}")

    # -- partial downloads ----------------------------------------------------------------
    def show_pending(self, pending: tuple[PendingDownload, ...]) -> None:
        self.pending_list.clear()
        for p in pending:
            have, total = p.have_bytes, p.total_bytes
            files = f"{len(p.files)} file{'s' if len(p.files) != 1 else ''}"
            text = (f"{p.repo}: {format_size(have, binary=True)} of "
                    f"{format_size(total, binary=True)} ({files})")  # fmt: skip
            item = QListWidgetItem(text, self.pending_list)
            item.setData(Qt.ItemDataRole.UserRole, p)
        self.pending_box.setVisible(bool(pending))
        if pending:
            self.pending_list.setCurrentRow(0)
        self._update_pending_buttons()

    def _selected_pending(self) -> PendingDownload | None:
        item = self.pending_list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def _update_pending_buttons(self) -> None:
        on = self._selected_pending() is not None and not self.controller.busy
        self.resume_button.setEnabled(on)
        self.discard_button.setEnabled(on)

    def resume_selected(self) -> Job | None:
        p = self._selected_pending()
        return None if p is None else self.controller.resume(p)

    def discard_selected(self) -> Job | None:
        p = self._selected_pending()
        return None if p is None else self.controller.discard(p)
