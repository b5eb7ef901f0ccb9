"""The Results page's table: a read-only Qt model over the core's ``ResultsTable``.

Every cell's text is the core's ``format_cell``; ``Qt.UserRole`` is the raw value the core
stored, and the proxy sorts with the core's ``sort_key`` (an unmeasured cell last). A cell
measured under another setting than the project's is shaded and says how in its tooltip.
Copy (Ctrl+C and the context menu) gives the selected rows as the core's TSV or markdown.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QBrush, QColor, QFont, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QMenu, QTableView, QWidget

from lwq_app.core.results.compare import ResultRow, ResultsTable, format_cell, sort_key
from lwq_app.core.results.report import table_text

Index = QModelIndex | QPersistentModelIndex
#: the shade of a cell not measured under the project's setting (amber, light)
FLAGGED = QColor(255, 214, 120, 110)
#: the name of a row whose file or results file cannot be read
ERROR = QColor("#D55E00")


class ResultsTableModel(QAbstractTableModel):
    """One row per file of the core's table (the F16 base first)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.table: ResultsTable | None = None

    def set_table(self, table: ResultsTable | None) -> None:
        self.beginResetModel()
        self.table = table
        self.endResetModel()

    def row(self, i: int) -> ResultRow:
        assert self.table is not None
        return self.table.rows[i]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() or self.table is None else len(self.table.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() or self.table is None else len(self.table.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.table is None:
            return None
        r = self.table.rows[index.row()]
        col = self.table.columns[index.column()]
        cell = r.cell(col.key)
        if role == Qt.ItemDataRole.DisplayRole:
            return format_cell(r, col)
        if role == Qt.ItemDataRole.UserRole:
            return cell.value
        if role == Qt.ItemDataRole.TextAlignmentRole and col.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if (
            role == Qt.ItemDataRole.BackgroundRole
            and cell.value is not None
            and not cell.comparable
        ):
            return QBrush(FLAGGED)
        if role == Qt.ItemDataRole.ForegroundRole and r.error and col.key == "name":
            return QBrush(ERROR)
        if role == Qt.ItemDataRole.FontRole and r.is_base:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tip(r, col.key, cell.note, cell.comparable)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if self.table is None or orientation != Qt.Orientation.Horizontal:
            return None
        if not 0 <= section < len(self.table.columns):
            return None
        col = self.table.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.header
        if role == Qt.ItemDataRole.ToolTipRole:
            return col.tip
        return None


def _tip(r: ResultRow, key: str, note: str, comparable: bool) -> str:
    if r.error and key == "name":
        return r.error
    if key == "name":
        return str(r.path)
    if note and not comparable:
        return f"Not measured under the project's setting: {note}"
    return note


class ResultsSortProxy(QSortFilterProxyModel):
    """Sorts rows by the core's ``sort_key`` of the clicked column."""

    def lessThan(self, left: Index, right: Index) -> bool:
        model = self.sourceModel()
        assert isinstance(model, ResultsTableModel)
        table = model.table
        if table is None:
            return False
        col = table.columns[left.column()]
        return sort_key(table.rows[left.row()], col) < sort_key(table.rows[right.row()], col)


class ResultsTableView(QTableView):
    """The sortable, copyable table; ``row_selected`` gives the core row of a click."""

    row_selected = Signal(int)  # the row in the core's table

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("results_table")
        self.results = ResultsTableModel(self)
        self.proxy = ResultsSortProxy(self)
        self.proxy.setSourceModel(self.results)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the core's order until a click
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.setToolTip("")
        self.selectionModel().currentRowChanged.connect(self._current)
        self.copy_tsv = QAction("Copy rows as TSV", self)
        self.copy_tsv.setShortcut(QKeySequence.StandardKey.Copy)
        self.copy_tsv.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.copy_tsv.triggered.connect(lambda: self.copy(markdown=False))
        self.copy_md = QAction("Copy rows as markdown", self)
        self.copy_md.triggered.connect(lambda: self.copy(markdown=True))
        self.addAction(self.copy_tsv)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    def set_table(self, table: ResultsTable | None) -> None:
        keep = self.selected_rows()
        self.results.set_table(table)
        if table is not None:
            self._size_columns(table)
            if keep:
                self.select_row(keep[0])

    def _size_columns(self, table: ResultsTable) -> None:
        fm = self.fontMetrics()
        for j, col in enumerate(table.columns):
            texts = [col.header, *(format_cell(r, col) for r in table.rows)]
            self.setColumnWidth(j, min(320, max(fm.horizontalAdvance(t) for t in texts) + 22))

    def selected_rows(self) -> list[int]:
        """The core rows selected, in the view's order."""
        rows = sorted({i.row() for i in self.selectionModel().selectedRows()})
        return [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in rows]

    def select_row(self, core_row: int) -> None:
        """Select (and show) the core's row ``core_row``."""
        if self.results.table is None or not 0 <= core_row < len(self.results.table.rows):
            return
        idx = self.proxy.mapFromSource(self.results.index(core_row, 0))
        self.selectRow(idx.row())
        self.scrollTo(idx)

    def view_row(self, core_row: int) -> int:
        return self.proxy.mapFromSource(self.results.index(core_row, 0)).row()

    def _current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.row_selected.emit(self.proxy.mapToSource(current).row())

    def copy(self, *, markdown: bool) -> str:
        """Put the selected rows (all when none) on the clipboard as the core writes them."""
        table = self.results.table
        if table is None:
            return ""
        rows = self.selected_rows() or [
            self.proxy.mapToSource(self.proxy.index(r, 0)).row()
            for r in range(self.proxy.rowCount())
        ]
        text = table_text(table, rows, markdown=markdown)
        QGuiApplication.clipboard().setText(text)
        return text

    def _menu(self, pos: Any) -> None:
        menu = QMenu(self)
        menu.addAction(self.copy_tsv)
        menu.addAction(self.copy_md)
        menu.exec(self.viewport().mapToGlobal(pos))
