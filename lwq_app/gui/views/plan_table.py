"""The plan as a table: one row per quantized tensor, the requested type editable by a combo.

``PlanTableModel`` is a ``QAbstractTableModel`` over the core's ``QuantPlan``; the ladders
(the types a tensor may take) and the per-tensor predicted ΔKLD come from the core
(``plan_ladders``, ``KldPredictor.tensor_cost``). Editing the Requested column does not
change the model: it emits ``type_edit_requested(name, type)`` and the page turns that into
the same undoable command as a drag, then shows the new plan with ``set_plan``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QComboBox, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from lwq_app.core.jobs import format_size
from lwq_app.core.modelfile import tensor_kind, tensor_layer
from lwq_app.core.plan import QuantPlan, TensorPlan

from .tensor_table import TENSOR_HEADERS, TensorFilterProxy

Index = QModelIndex | QPersistentModelIndex


class PlanColumn(IntEnum):
    TENSOR = 0
    LAYER = 1
    KIND = 2
    SHAPE = 3
    REQUESTED = 4
    EFFECTIVE = 5
    BYTES = 6
    KLD = 7


_HEADERS = {
    **dict(zip(list(PlanColumn)[:4], TENSOR_HEADERS, strict=True)),
    PlanColumn.REQUESTED: ("Requested", "The type the plan asks for (double-click to change)"),
    PlanColumn.EFFECTIVE: (
        "Effective",
        "The type llama.cpp writes: the requested one unless its blocks do not divide the rows",
    ),
    PlanColumn.BYTES: ("Size", "Bytes of this tensor in the quantized file"),
    PlanColumn.KLD: ("Predicted ΔKLD", "This tensor's share of the plan's predicted KLD"),
}

#: the role that gives a cell's raw value (numbers sort as numbers)
RAW_ROLE = Qt.ItemDataRole.UserRole


class PlanTableModel(QAbstractTableModel):
    """The quantized tensors of a plan; ``set_plan`` replaces them (rows keep their order)."""

    type_edit_requested = Signal(str, str)  # tensor, type

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[TensorPlan] = []
        self._ladders: Mapping[str, tuple[str, ...]] = {}
        self._cost: Callable[[str, str], float | None] | None = None
        self.kld_label = "Predicted ΔKLD"

    def set_plan(
        self,
        plan: QuantPlan | None,
        ladders: Mapping[str, tuple[str, ...]],
        cost: Callable[[str, str], float | None] | None = None,
        kld_label: str = "Predicted ΔKLD",
    ) -> None:
        rows = [] if plan is None else plan.quantized_tensors()
        same = [t.name for t in rows] == [t.name for t in self._rows]
        self._rows, self._ladders, self._cost = rows, ladders, cost
        if kld_label != self.kld_label:
            self.kld_label = kld_label
            self.headerDataChanged.emit(Qt.Orientation.Horizontal, PlanColumn.KLD, PlanColumn.KLD)
        if same and rows:  # an edit: same tensors, other types
            last = self.index(len(rows) - 1, len(PlanColumn) - 1)
            self.dataChanged.emit(self.index(0, PlanColumn.REQUESTED), last)
        else:
            self.beginResetModel()
            self.endResetModel()

    def tensor(self, row: int) -> TensorPlan:
        return self._rows[row]

    def ladder(self, row: int) -> tuple[str, ...]:
        return self._ladders.get(self._rows[row].name, ())

    def row_of(self, name: str) -> int:
        return next(i for i, t in enumerate(self._rows) if t.name == name)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(PlanColumn)

    def _raw(self, t: TensorPlan, col: PlanColumn) -> Any:
        if col is PlanColumn.TENSOR:
            return t.name
        if col is PlanColumn.LAYER:
            layer = tensor_layer(t.name)
            return -1 if layer is None else layer
        if col is PlanColumn.KIND:
            return tensor_kind(t.name)
        if col is PlanColumn.SHAPE:
            return t.n_params
        if col is PlanColumn.REQUESTED:
            return t.requested
        if col is PlanColumn.EFFECTIVE:
            return t.effective
        if col is PlanColumn.BYTES:
            return t.size_bytes
        cost = None if self._cost is None else self._cost(t.name, t.effective)
        return -1.0 if cost is None else cost

    def _text(self, t: TensorPlan, col: PlanColumn) -> str:
        raw = self._raw(t, col)
        if col is PlanColumn.LAYER:
            return "" if raw < 0 else str(raw)
        if col is PlanColumn.SHAPE:
            return " × ".join(str(d) for d in t.shape)
        if col is PlanColumn.BYTES:
            return format_size(raw)
        if col is PlanColumn.KLD:
            return "—" if raw < 0 else f"{raw:.3g}"
        return str(raw)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        t, col = self._rows[index.row()], PlanColumn(index.column())
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return self._text(t, col)
        if role == RAW_ROLE:
            return self._raw(t, col)
        if role == Qt.ItemDataRole.ForegroundRole and col is PlanColumn.EFFECTIVE and t.fallback:
            return QColor("#c05000")
        if role == Qt.ItemDataRole.ToolTipRole and t.fallback and col in (
            PlanColumn.REQUESTED, PlanColumn.EFFECTIVE
        ):  # fmt: skip
            return (
                f"requested {t.requested}, llama.cpp writes {t.effective}: rows of {t.shape[0]} "
                f"are not a multiple of {t.requested}'s block"
            )
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (
            PlanColumn.LAYER, PlanColumn.BYTES, PlanColumn.KLD
        ):  # fmt: skip
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        f = super().flags(index)
        if index.isValid() and index.column() == PlanColumn.REQUESTED:
            f |= Qt.ItemFlag.ItemIsEditable
        return f

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or index.column() != PlanColumn.REQUESTED or not value:
            return False
        t = self._rows[index.row()]
        if str(value) != t.requested:
            self.type_edit_requested.emit(t.name, str(value))
        return False  # the page applies the edit and calls set_plan

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(PlanColumn):
            return None
        col = PlanColumn(section)
        title, tip = _HEADERS[col]
        if col is PlanColumn.KLD:
            title = f"{self.kld_label[:1].upper()}{self.kld_label[1:]} (share)"
        if role == Qt.ItemDataRole.DisplayRole:
            return title
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip
        return None


def plan_filter_proxy(parent: Any = None) -> TensorFilterProxy:
    """Sorts by raw values; the filter text matches tensor name, kind or either type."""
    cols = (PlanColumn.TENSOR, PlanColumn.KIND, PlanColumn.REQUESTED, PlanColumn.EFFECTIVE)
    return TensorFilterProxy(parent, cols)


class TypeComboDelegate(QStyledItemDelegate):
    """A combo of the tensor's ladder (from the core) for the Requested column."""

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: Index) -> QWidget:
        combo = QComboBox(parent)
        model, row = _source(index)
        for name in model.ladder(row):
            combo.addItem(name)
        return combo

    def setEditorData(self, editor: QWidget, index: Index) -> None:
        assert isinstance(editor, QComboBox)
        model, row = _source(index)
        i = editor.findText(model.tensor(row).effective)
        editor.setCurrentIndex(max(i, 0))

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: Index) -> None:
        assert isinstance(editor, QComboBox)
        model.setData(index, editor.currentText())


def _source(index: Index) -> tuple[PlanTableModel, int]:
    m, i = index.model(), index
    while isinstance(m, QSortFilterProxyModel):
        i = m.mapToSource(i)
        m = m.sourceModel()
    assert isinstance(m, PlanTableModel)
    return m, i.row()
