"""The details of one tensor, as the Importance step shows them beside its heatmap: the
model's ``TensorInfo`` (type, shape), its imatrix statistics row (``TensorStats``) and, for
a sensitivity map, the error of the shown type. Exact values, as the core has them."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from lwq_app.core.importance import STAT_FIELDS, ImatrixStats, Sensitivity
from lwq_app.core.importance.heatmap import SENSITIVITY_PREFIX
from lwq_app.core.modelfile import ModelInfo

#: readable names of the core's statistics (``STAT_FIELDS``)
STAT_NAMES = {
    "sum_act2": "Σact² (sum of squared activations)",
    "min": "min",
    "max": "max",
    "mean": "mean (μ)",
    "std": "σ (standard deviation)",
    "active": "active fraction (|v| > 1e-5)",
    "entropy": "entropy (bits)",
    "entropy_norm": "entropy, normalised (%)",
    "zd": "ZD (fraction with z > 1)",
    "cossim": "cosine similarity with the layer before",
}
#: short names of the core's statistics (``STAT_FIELDS``)
SHORT_NAMES = {
    "sum_act2": "Σact²",
    "mean": "μ",
    "std": "σ",
    "active": "active fraction",
    "entropy_norm": "entropy (norm, %)",
    "zd": "ZD",
    "cossim": "cos sim (layer before)",
}


def stat_label(key: str) -> str:
    if key.startswith(SENSITIVITY_PREFIX):
        return f"sensitivity ({key[len(SENSITIVITY_PREFIX) :]})"
    return STAT_NAMES.get(key, key)


def _number(v: float) -> str:
    """Seven significant digits shown, the exact value (``repr``) as the tooltip."""
    return f"{v:.7g}|{v!r}"


class TensorDetailsTable(QTableWidget):
    """Two columns, property and value, for the clicked tensor."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Property", "Value"])
        self.verticalHeader().hide()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setToolTip("The clicked tensor: its type, shape and statistics")
        self.placeholder()

    def placeholder(self) -> None:
        self.set_rows([("", "Click a cell of the heatmap")])

    def show_tensor(
        self,
        name: str,
        model: ModelInfo | None,
        stats: ImatrixStats | None,
        sens: Sensitivity | None = None,
        type_name: str | None = None,
    ) -> None:
        """``name``'s type and shape, its statistics, and its error for ``type_name``."""
        rows: list[tuple[str, str]] = [("tensor", name)]
        info = None if model is None else next((t for t in model.tensors if t.name == name), None)
        if info is not None:
            rows += [("type", info.type), ("shape", " × ".join(map(str, info.shape)))]
        ts = None if stats is None else stats.by_name().get(name)
        if ts is None:
            rows.append(("imatrix", "no entry for this tensor"))
        else:
            rows += [(SHORT_NAMES.get(k, k), _number(getattr(ts, k))) for k in STAT_FIELDS]
            rows.append(("N (values)", str(ts.n)))
        measured = None if sens is None else sens.tensors.get(name)
        if measured is not None and type_name is not None:
            error = measured.error.get(type_name)
            rows.append((f"error {type_name}", "not valid" if error is None else _number(error)))
        self.set_rows(rows)

    def set_rows(self, rows: list[tuple[str, str]]) -> None:
        """Rows of (property, value); a value "shown|exact" shows the first part and has the
        exact one as its tooltip."""
        self.setRowCount(len(rows))
        for r, (k, v) in enumerate(rows):
            self.setItem(r, 0, QTableWidgetItem(k))
            shown, _, exact = v.partition("|")
            item = QTableWidgetItem(shown)
            item.setToolTip(exact or shown)
            self.setItem(r, 1, item)

    def rows(self) -> dict[str, str]:
        """What the table shows, property → value as shown (for tests and the tour)."""

        def text(r: int, c: int) -> str:
            item = self.item(r, c)
            return "" if item is None else item.text()

        return {text(r, 0): text(r, 1) for r in range(self.rowCount())}
