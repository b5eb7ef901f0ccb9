"""The tensor table of the Model step: a read-only Qt model over the core's inventory.

``TensorTableModel`` shows ``ModelInfo.tensors`` as they are (the core decides layer, kind,
size and whether llama.cpp quantizes a tensor); ``Qt.UserRole`` gives each cell's raw value so
that ``TensorFilterProxy`` sorts numbers as numbers and shapes by their parameter count.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from lwq_app.core.jobs import format_size
from lwq_app.core.modelfile import TensorInfo

Index = QModelIndex | QPersistentModelIndex


class Column(IntEnum):
    NAME = 0
    LAYER = 1
    KIND = 2
    SHAPE = 3
    TYPE = 4
    PARAMS = 5
    BYTES = 6
    QUANTIZED = 7


#: title and tooltip of the columns every tensor table has (the plan table's too)
TENSOR_HEADERS = (
    ("Tensor", "The tensor's name in the GGUF file"),
    ("Layer", "The block (blk.N) the tensor belongs to; empty outside the layers"),
    ("Kind", "The tensor kind (attn_q, ffn_down, token_embd…)"),
    ("Shape", "ne0 first, as in GGUF and ggml"),
)

_HEADERS = {
    **dict(
        zip((Column.NAME, Column.LAYER, Column.KIND, Column.SHAPE), TENSOR_HEADERS, strict=True)
    ),
    Column.TYPE: ("Type", "The ggml type the tensor has in this file"),
    Column.PARAMS: ("Parameters", "Number of weights"),
    Column.BYTES: ("Size", "Bytes of tensor data in this file"),
    Column.QUANTIZED: (
        "Quantized",
        "Whether llama.cpp's quantizer would quantize this tensor "
        "(norms, 1-D tensors and a few others always stay as they are)",
    ),
}

#: the columns filtered by the text box
FILTER_COLUMNS = (Column.NAME, Column.KIND, Column.TYPE)


def _raw(t: TensorInfo, col: Column) -> Any:
    if col is Column.NAME:
        return t.name
    if col is Column.LAYER:
        return -1 if t.layer is None else t.layer
    if col is Column.KIND:
        return t.kind
    if col is Column.SHAPE:
        return t.n_params
    if col is Column.TYPE:
        return t.type
    if col is Column.PARAMS:
        return t.n_params
    if col is Column.BYTES:
        return t.n_bytes
    return t.quantizable


def _text(t: TensorInfo, col: Column) -> str:
    if col is Column.NAME:
        return t.name
    if col is Column.LAYER:
        return "" if t.layer is None else str(t.layer)
    if col is Column.KIND:
        return t.kind
    if col is Column.SHAPE:
        return " × ".join(str(d) for d in t.shape)
    if col is Column.TYPE:
        return t.type
    if col is Column.PARAMS:
        return f"{t.n_params:,}"
    if col is Column.BYTES:
        return format_size(t.n_bytes, binary=True)
    return "yes" if t.quantizable else "no"


class TensorTableModel(QAbstractTableModel):
    """One row per tensor of a model, in the file's order."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._tensors: tuple[TensorInfo, ...] = ()

    def set_tensors(self, tensors: tuple[TensorInfo, ...]) -> None:
        self.beginResetModel()
        self._tensors = tuple(tensors)
        self.endResetModel()

    def widest_texts(self) -> list[str]:
        """The longest text of each column, its header included: what a view sizes its
        columns by (``resizeColumnsToContents`` would call ``data`` for every cell on the
        GUI thread)."""
        out = []
        for col in Column:
            texts = [_HEADERS[col][0], *(_text(t, col) for t in self._tensors)]
            out.append(max(texts, key=len))
        return out

    @property
    def tensors(self) -> tuple[TensorInfo, ...]:
        return self._tensors

    def tensor(self, row: int) -> TensorInfo:
        return self._tensors[row]

    # -- QAbstractTableModel ----------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._tensors)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        t = self._tensors[index.row()]
        col = Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return _text(t, col)
        if role == Qt.ItemDataRole.UserRole:
            return _raw(t, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (
            Column.LAYER,
            Column.PARAMS,
            Column.BYTES,
        ):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and col is Column.BYTES:
            return f"{t.n_bytes:,} bytes"
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Column):
            return None
        label, tip = _HEADERS[Column(section)]
        if role == Qt.ItemDataRole.DisplayRole:
            return label
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip
        return None


class TensorFilterProxy(QSortFilterProxyModel):
    """Sorts on the raw values (``UserRole``) and keeps the rows whose text in one of
    ``columns`` (default: name, kind, type) contains the filter text, case-insensitive. The
    plan table uses it too, with its own columns."""

    def __init__(self, parent: Any = None, columns: Sequence[int] = FILTER_COLUMNS) -> None:
        super().__init__(parent)
        self._columns = tuple(columns)
        self.setSortRole(Qt.ItemDataRole.UserRole)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

    def set_filter_text(self, text: str) -> None:
        self.setFilterFixedString(text.strip())

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        rx = self.filterRegularExpression()
        if not rx.pattern():
            return True
        model = self.sourceModel()
        return any(
            rx.match(str(model.data(model.index(source_row, col, source_parent)))).hasMatch()
            for col in self._columns
        )
