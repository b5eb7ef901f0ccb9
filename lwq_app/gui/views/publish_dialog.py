"""Publish the project's variants to the Hub: log in, choose, preview the card, upload.

The dialog builds a ``PublishRequest`` from what the user picks and hands every step to the
core through the window's bridge: ``check_token`` / ``save_token`` (whoami: who the token is
and whether it may write), ``preview_card`` (the README the commit will hold, made from the
results store; the user may edit it, and the edited text is what is published) and
``publish`` (one commit of the GGUFs and the card, in a child process: Cancel kills it and
the remote ``main`` stays as it was). Progress shows here and in the job panel; errors take
the notifier's road, the dialog only repeats them in its status line.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.hub.access import hub_access, saved_token
from lwq_app.core.hub.publish import (
    PublishRequest,
    PublishResult,
    TokenInfo,
    check_token,
    preview_card,
    publish,
    save_token,
)
from lwq_app.core.jobs import format_size, one_line
from lwq_app.core.results.project import Variant

from ..context import AppContext
from ..hub_controller import TransferReadout
from ..job_panel import STEPS
from ..worker import Job

TOKEN_HELP = (
    "A Hugging Face access token (Settings → Access Tokens): the 'write' role, or a "
    "fine-grained token with write access to the repo's namespace"
)


class PublishDialog(QDialog):
    """``PublishDialog(ctx, parent)``: the project's variants to a Hub repo."""

    published = Signal(object)  # PublishResult

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.setWindowTitle("Publish to the Hugging Face Hub")
        self.setObjectName("publish_dialog")
        self.token_info: TokenInfo | None = None
        self.job: Job | None = None
        self.result_info: PublishResult | None = None
        self._card_for: PublishRequest | None = None  # the request the shown card was made for
        self._card_edited = False
        self._readout = TransferReadout()

        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText(
            "the saved token" if saved_token() else "paste a token (hf_…)"
        )
        self.token.setToolTip(TOKEN_HELP)
        self.check_button = QPushButton("Check")
        self.check_button.setToolTip("Ask the Hub who this token is and what it may do")
        self.check_button.clicked.connect(self.check)
        self.save_box = QCheckBox("Save it")
        self.save_box.setToolTip("Save the token where `hf auth login` does (readable by you only)")
        self.who = QLabel("Not checked yet." if saved_token() else "No token saved: paste one.")
        self.who.setWordWrap(True)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.save_box)
        token_row.addWidget(self.check_button)

        self.repo = QLineEdit()
        self.repo.setPlaceholderText("ORG/NAME-GGUF")
        self.repo.setToolTip("The repo to create or add to (your user name or an org of yours)")
        self.private_box = QCheckBox("Private repo")
        self.private_box.setToolTip("Create the repo private (an existing repo keeps its setting)")
        self.base_model = QLineEdit()
        self.base_model.setPlaceholderText("recorded at download, else the GGUF's metadata")
        self.base_model.setToolTip("The model these quantize (the card's base_model: ORG/NAME)")
        self.variants = QListWidget()
        self.variants.setToolTip("The variants to upload (one commit, with the card)")
        self.variants.setMaximumHeight(120)
        self.variants.itemChanged.connect(lambda _i: self._request_changed())
        for v in self._project_variants():
            item = QListWidgetItem(f"{v.name} — {format_size(v.file_bytes, binary=True)}")
            item.setData(Qt.ItemDataRole.UserRole, v.path)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(str(v.path))
            self.variants.addItem(item)
        form = QFormLayout()
        form.addRow("Token:", token_row)
        form.addRow("", self.who)
        form.addRow("Repo:", self.repo)
        form.addRow("", self.private_box)
        form.addRow("Base model:", self.base_model)
        form.addRow("Variants:", self.variants)

        self.preview_button = QPushButton("Preview the card")
        self.preview_button.setToolTip("The README.md the commit will hold (you may edit it)")
        self.preview_button.clicked.connect(self.preview)
        self.card = QPlainTextEdit()
        self.card.setPlaceholderText("Preview the card to see (and edit) it before publishing")
        self.card.setToolTip("The model card: published as shown here")
        self.card.textChanged.connect(self._on_card_edited)
        self.card.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.card_label = QLabel("Model card (README.md):")

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.status.setOpenExternalLinks(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, STEPS)
        self.bar.hide()
        self.publish_button = QPushButton("Publish")
        self.publish_button.setToolTip("Create or reuse the repo and commit the files and card")
        self.publish_button.clicked.connect(self.start_publish)
        self.cancel_button = QPushButton("Cancel upload")
        self.cancel_button.setToolTip("Stop the upload: the repo's main branch stays as it was")
        self.cancel_button.clicked.connect(self.cancel_publish)
        self.cancel_button.hide()
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addStretch(1)
        for b in (self.cancel_button, self.publish_button, self.close_button):
            buttons.addWidget(b)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.card_label)
        lay.addWidget(self.card, 1)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addLayout(buttons)
        self.resize(760, 680)
        for w in (self.repo, self.base_model):
            w.textChanged.connect(lambda _t: self._request_changed())
        self.private_box.toggled.connect(lambda _b: self._request_changed())
        ctx.runner.job_progressed.connect(self._on_progress)
        self._update_buttons()

    # -- what is chosen ---------------------------------------------------------------------
    def _project_variants(self) -> tuple[Variant, ...]:
        state = self._ctx.session.state
        return () if state is None else tuple(state.variants)

    def chosen(self) -> tuple[Path, ...]:
        items = (self.variants.item(i) for i in range(self.variants.count()))
        return tuple(
            Path(it.data(Qt.ItemDataRole.UserRole))
            for it in items
            if it.checkState() == Qt.CheckState.Checked
        )

    def set_chosen(self, paths: set[Path]) -> None:
        for i in range(self.variants.count()):
            it = self.variants.item(i)
            on = Path(it.data(Qt.ItemDataRole.UserRole)) in paths
            it.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def request(self, *, with_card: bool = True) -> PublishRequest:
        """The request the form describes (the shown card, if the user edited it)."""
        session = self._ctx.session
        state = session.state
        card = self.card.toPlainText() if with_card and self._card_edited else None
        return PublishRequest(
            repo=self.repo.text().strip(),
            variants=self.chosen(),
            base_model=self.base_model.text().strip() or None,
            reference=state.base_model if state is not None else None,
            private=self.private_box.isChecked(),
            token=self.token.text().strip() or None,
            card_text=card,
            project=session.folder,
        )

    def _request_changed(self) -> None:
        if self._card_for is not None and not self._card_edited:
            self._card_for = None  # the preview is of another request now
            self.status.setText("The choice changed: preview the card again.")
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.job is not None
        ready = bool(self.repo.text().strip()) and bool(self.chosen())
        self.preview_button.setEnabled(ready and not running)
        self.publish_button.setEnabled(ready and not running)
        self.cancel_button.setVisible(running)
        self.bar.setVisible(running)

    # -- the token ----------------------------------------------------------------------------
    def check(self) -> Job:
        """Check the pasted (or saved) token; with "Save it", save it once it checks."""
        token = self.token.text().strip() or saved_token() or ""
        save = self.save_box.isChecked() and bool(self.token.text().strip())
        self.who.setText("Checking…")
        fn = save_token if save else check_token
        return self._ctx.runner.submit_call(
            "Save the Hub token" if save else "Check the Hub token",
            lambda: fn(token, hub_access(token)),
            on_result=self._on_token,
            on_error=lambda e: self.who.setText(f"Refused: {one_line(str(e))}"),
        )

    def _on_token(self, info: TokenInfo) -> None:
        self.token_info = info
        may = "may write" if info.can_write else "read only: it cannot publish"
        scopes = f"; scopes {', '.join(info.scopes)}" if info.scopes else ""
        saved = " Saved." if self.save_box.isChecked() and self.token.text().strip() else ""
        self.who.setText(f"{info.user} ({info.role} token, {may}{scopes}).{saved}")
        if not self.repo.text().strip():
            model = self._ctx.session.model
            name = (model.name if model is not None and model.name else "model").replace(" ", "-")
            self.repo.setText(f"{info.user}/{name}-GGUF")

    # -- the card -------------------------------------------------------------------------------
    def preview(self) -> Job:
        """Make the card the commit would hold (off the GUI thread) and show it."""
        request = self.request(with_card=False)
        self.status.setText("Making the card…")

        def shown(text: str) -> None:
            self._card_for = request
            self.card.blockSignals(True)
            self.card.setPlainText(text)
            self.card.blockSignals(False)
            self._card_edited = False
            self.status.setText("The card as it will be published; edit it here if you like.")

        return self._ctx.runner.submit_call(
            f"Preview the card of {request.repo}",
            lambda: preview_card(request),
            on_result=shown,
            on_error=lambda e: self.status.setText(f"No card: {one_line(str(e))}"),
        )

    def _on_card_edited(self) -> None:
        self._card_edited = True

    # -- the upload ---------------------------------------------------------------------------
    def start_publish(self) -> Job | None:
        if self.job is not None:
            return None
        request = self.request()
        self.status.setText(f"Publishing {len(request.variants)} file(s) to {request.repo}…")
        self.bar.setValue(0)
        self.job = self._ctx.runner.submit(
            f"Publish {request.repo}",
            publish,
            request,
            on_result=self._on_published,
            on_error=lambda e: self._ended(f"Not published: {one_line(str(e))}"),
            on_cancel=lambda: self._ended("Cancelled: the repo's main branch is as it was."),
        )
        self._update_buttons()
        return self.job

    def cancel_publish(self) -> None:
        if self.job is not None:
            self._ctx.runner.cancel(self.job)
            self.status.setText("Cancelling…")

    def _on_published(self, result: PublishResult) -> None:
        self.result_info = result
        self._ended(
            f'Published <a href="{result.url}">{result.url}</a> '
            f"(commit {result.commit[:12]}, {len(result.files)} files)."
        )
        self._ctx.notifier.info("Publish", f"published {result.url} at {result.commit[:12]}")
        self.published.emit(result)

    def _ended(self, text: str) -> None:
        self.job = None
        self.status.setText(text)
        self._update_buttons()

    def _on_progress(self, job: Job) -> None:
        if job is not self.job or job.progress is None:
            return
        self.bar.setValue(round(job.progress.position * STEPS))
        self.status.setText(self._readout.text(job))

    def reject(self) -> None:
        """Closing while an upload runs cancels it (nothing half-published stays)."""
        self.cancel_publish()
        super().reject()
