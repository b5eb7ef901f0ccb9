"""The Results page's variants list: every file of the project and what can be done to it.

A row per row of the core's results table (the F16 base first): its name, plan (stock mix or
custom), where it lives and which results it has. The actions are core calls run through the
worker bridge — checking a GGUF added from disk (``check_variant_file``), renaming, deleting
(after asking: the file, its plan sidecar and its results), the stock mixes nearest below and
above a variant (``nearest_stock_mixes``, queued as Quantize & check), and the Speed test
of a variant against F16 and the nearest stock mix (``nearest_stock_row``), queued exclusive.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QInputDialog,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.jobs import LwqError
from lwq_app.core.results.compare import ResultRow, ResultsTable, nearest_stock_row
from lwq_app.core.results.variants import (
    StockMix,
    add_variant,
    check_variant_file,
    delete_variant,
    nearest_stock_mixes,
    rename_variant,
    stock_mix_output,
    variant_files,
)

from ..context import AppContext

MODEL_FILTER = "GGUF models (*.gguf);;All files (*)"
HEADERS = ("Variant", "Plan", "Results", "Where")


def results_summary(r: ResultRow) -> str:
    """What the row has been measured for, in words (from the core's cells)."""
    if r.error:
        return r.error
    have = []
    if r.kld is not None:
        have.append("KLD")
    elif r.ppl is not None or r.cell("ppl").value is not None:
        have.append("PPL")
    if r.tasks:
        have.append(f"{len(r.tasks)} benchmark{'s' if len(r.tasks) != 1 else ''}")
    if r.speed:
        have.append("speed")
    return ", ".join(have) or "not measured yet"


class VariantsPanel(QWidget):
    """The list and its buttons; ``row_selected`` gives the core row picked here."""

    row_selected = Signal(int)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.table: ResultsTable | None = None
        self.list = QTableWidget(0, len(HEADERS), self)
        self.list.setObjectName("variants_list")
        self.list.setHorizontalHeaderLabels(HEADERS)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.verticalHeader().setVisible(False)
        self.list.horizontalHeader().setStretchLastSection(True)
        self.list.currentCellChanged.connect(lambda row, *_: self._current(row))
        buttons = [
            ("add", "Add from disk…", "Add a GGUF of this base model (a stock mix, a download)"),
            ("reveal", "Reveal", "Open the folder the selected file is in"),
            ("rename", "Rename…", "Rename the selected variant in the project"),
            ("delete", "Delete…", "Delete the selected variant's file, plan and results"),
            (
                "stock",
                "Nearest stock mixes",
                "Quantize & check the stock mixes just below and above this variant's size, "
                "with the project's imatrix",
            ),
            (
                "speed",
                "Speed",
                "Bench this file, F16 and the nearest stock mix with the target's settings "
                "(the queue pauses)",
            ),
        ]
        grid = QGridLayout()
        self.buttons: dict[str, QPushButton] = {}
        for n, (key, text, tip) in enumerate(buttons):
            b = QPushButton(text, self)
            b.setToolTip(tip)
            grid.addWidget(b, n // 2, n % 2)
            self.buttons[key] = b
        self.buttons["add"].clicked.connect(self._add_dialog)
        self.buttons["rename"].clicked.connect(self._rename_dialog)
        self.buttons["delete"].clicked.connect(self._delete_dialog)
        self.buttons["reveal"].clicked.connect(self.reveal)
        self.buttons["stock"].clicked.connect(self.make_nearest_stock_mixes)
        self.buttons["speed"].clicked.connect(self.speed)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.list, 1)
        lay.addLayout(grid)
        self._enable()

    # -- the list ----------------------------------------------------------------------------
    def set_table(self, table: ResultsTable | None) -> None:
        keep = self.current()
        self.table = table
        rows = () if table is None else table.rows
        self.list.blockSignals(True)
        self.list.setRowCount(len(rows))
        for i, r in enumerate(rows):
            texts = (r.name, r.stock_mix or "custom", results_summary(r), str(r.path.parent))
            for j, t in enumerate(texts):
                item = QTableWidgetItem(t)
                item.setToolTip(str(r.path) if j == 3 else t)
                self.list.setItem(i, j, item)
        self.list.resizeColumnsToContents()
        self.list.blockSignals(False)
        if keep is not None and table is not None:
            again = table.row_of(keep.path)
            if again is not None:
                self.select_row(again)
        self._enable()

    def select_row(self, i: int) -> None:
        self.list.blockSignals(True)
        self.list.selectRow(i)
        self.list.blockSignals(False)
        self._enable()

    def current(self) -> ResultRow | None:
        i = self.list.currentRow()
        if self.table is None or not 0 <= i < len(self.table.rows):
            return None
        return self.table.rows[i]

    def _current(self, row: int) -> None:
        self._enable()
        if row >= 0:
            self.row_selected.emit(row)

    def _enable(self) -> None:
        r = self.current()
        is_variant = r is not None and not r.is_base
        for key in ("rename", "delete", "stock"):
            self.buttons[key].setEnabled(is_variant)
        self.buttons["reveal"].setEnabled(r is not None)
        self.buttons["speed"].setEnabled(r is not None and not r.error)
        self.buttons["add"].setEnabled(self._ctx.session.state is not None)

    # -- adding, renaming, deleting ----------------------------------------------------------
    def _add_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a variant", "", MODEL_FILTER)
        if path:
            self.add_from_disk(Path(path))

    def add_from_disk(self, path: Path) -> None:
        """Check ``path`` against the base off the GUI thread; a good file joins the project,
        a bad one is reported (naming the file and the mismatch) and changes nothing."""
        session = self._ctx.session
        model = session.model
        if model is None or session.state is None:
            return

        def added(variant: object) -> None:
            if session.state is not None:
                session.set_state(add_variant(session.state, variant))  # type: ignore[arg-type]

        self._ctx.runner.submit_call(
            f"Add {path.name}", lambda: check_variant_file(path, model), on_result=added
        )

    def _rename_dialog(self) -> None:
        r = self.current()
        if r is None or r.is_base:
            return
        name, ok = QInputDialog.getText(self, "Rename the variant", "Name:", text=r.name)
        if ok:
            self.rename(r.path, name)

    def rename(self, path: Path, name: str) -> None:
        session = self._ctx.session
        if session.state is None:
            return
        try:
            session.set_state(rename_variant(session.state, path, name))
        except LwqError as e:
            self._ctx.notifier.report(e, "Rename the variant")

    def _delete_dialog(self) -> None:
        r = self.current()
        if r is None or r.is_base:
            return
        files = "\n".join(str(f) for f in variant_files(r.path) if f.exists())
        answer = QMessageBox.question(
            self,
            "Delete the variant",
            f"Delete {r.name} from the project and these files from disk?\n\n{files}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(r.path)

    def delete(self, path: Path) -> None:
        """Delete the variant's files off the GUI thread, then drop it from the project."""
        session = self._ctx.session
        state = session.state
        if state is None:
            return

        def deleted(_state: object) -> None:
            if session.state is not None:
                session.set_state(session.state.without_variant(path))

        self._ctx.runner.submit_call(
            f"Delete {path.name}", lambda: delete_variant(state, path), on_result=deleted
        )

    def reveal(self) -> None:
        r = self.current()
        if r is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(r.path.parent)))

    # -- stock mixes and speed ---------------------------------------------------------------
    def make_nearest_stock_mixes(self) -> None:
        """Queue Quantize & check of the stock mixes nearest below and above the selection."""
        r, session = self.current(), self._ctx.session
        model, state = session.model, session.state
        if r is None or r.is_base or model is None or state is None:
            return
        imatrix = state.imatrix
        size = r.file_bytes

        def queue(mixes: tuple[StockMix | None, StockMix | None]) -> None:
            have = {v.path for v in state.variants}
            queued, skipped = [], []
            for mix in mixes:
                if mix is None:
                    continue
                out = stock_mix_output(r.path.parent, model, mix.name)
                if out in have or out.exists():
                    skipped.append(f"{mix.name} ({out.name} exists)")
                    continue
                self._ctx.queue.quantize_and_check(mix.plan, out, mix.name)
                queued.append(mix.name)
            text = f"queued Quantize & check of {', '.join(queued)}" if queued else "nothing queued"
            if skipped:
                text += f"; already there: {', '.join(skipped)}"
            if not any(mixes):
                text = f"no stock mix is smaller or larger than {r.name}"
            self._ctx.notifier.info("Make nearest stock mixes", text)

        self._ctx.runner.submit_call(
            f"Stock mixes near {r.name}",
            lambda: nearest_stock_mixes(model, size, imatrix),
            on_result=queue,
        )

    def speed_paths(self) -> list[Path]:
        """What the Speed button benches: the selection, F16 and the nearest stock mix."""
        table, r = self.table, self.current()
        if table is None or r is None:
            return []
        i = table.row_of(r.path)
        near = None if i is None else nearest_stock_row(table, i)
        paths = [r.path, table.rows[0].path]
        if near is not None:
            paths.append(table.rows[near].path)
        return list(dict.fromkeys(paths))

    def speed(self) -> None:
        paths = self.speed_paths()
        if paths:
            self._ctx.queue.speed_test(paths)
