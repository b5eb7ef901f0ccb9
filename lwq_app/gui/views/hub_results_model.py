"""The Hub search results as a read-only Qt table over the core's ``SearchHit``s.

Every figure is the core's: parameters from the safetensors metadata, the F16 and stock-mix
sizes are ``search_models``' estimates, and the fit marks its ``fits`` for the target the
search was made for. The model only formats them (``format_size``, thousands separators) and
gives each cell's raw value under ``Qt.UserRole`` so the proxy sorts numbers as numbers. The
sizes come right after the repo and its parameter count: they are what a result is chosen by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor

from lwq_app.core.hub.search import SearchHit
from lwq_app.core.jobs import format_size

Index = QModelIndex | QPersistentModelIndex

FIT_MARK = {True: "✓", False: "✗"}
#: Okabe–Ito bluish green and vermillion: the fit marks' colours
FIT_COLOUR = {True: QColor("#009E73"), False: QColor("#D55E00")}
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def params_text(n: int | None) -> str:
    """``135,000,000`` as it is shown: a count with separators; empty when unknown."""
    return "" if n is None else f"{n:,}"


def size_text(n: int | None) -> str:
    return "" if n is None else format_size(n, binary=True)


def mix_size(hit: SearchHit, mix: str) -> int | None:
    return hit.est_f16_bytes if mix == "F16" else hit.est_sizes.get(mix)


def mix_cell(hit: SearchHit, mix: str) -> str:
    """``"3.80 GiB ✓"``: the core's estimate of ``mix`` (``"F16"`` or a stock mix) and, where
    the search had a target, its fit."""
    size = mix_size(hit, mix)
    if size is None:
        return ""
    fit = hit.fits.get(mix)
    return size_text(size) if fit is None else f"{size_text(size)} {FIT_MARK[bool(fit)]}"


@dataclass(frozen=True)
class HubColumn:
    """One column: its title and tooltip, the shown text and the sort key of a hit, and the
    stock mix it shows (``"F16"`` or a mix; None for the others)."""

    title: str
    tip: str
    text: Callable[[SearchHit], str]
    key: Callable[[SearchHit], Any]
    numeric: bool = False
    mix: str | None = None


def _size_column(mix: str) -> HubColumn:
    what = "its F16 GGUF" if mix == "F16" else f"the stock {mix} mix"
    return HubColumn(
        f"{mix} est.",
        f"Estimated size of {what} (✓ / ✗: fits the search's target, with the KV cache, or not)",
        lambda h: mix_cell(h, mix),
        lambda h: mix_size(h, mix) or 0,
        numeric=True,
        mix=mix,
    )


HEAD = (
    HubColumn("Repo", "The model's repo on the Hub", lambda h: h.repo, lambda h: h.repo.lower()),
    HubColumn("Parameters", "Weights, from the repo's safetensors or GGUF metadata",
              lambda h: params_text(h.parameters), lambda h: h.parameters or 0, numeric=True),
)  # fmt: skip
TAIL = (
    HubColumn("Downloads", "Downloads in the last 30 days",
              lambda h: f"{h.downloads:,}", lambda h: h.downloads, numeric=True),
    HubColumn("Likes", "Likes on the Hub", lambda h: f"{h.likes:,}", lambda h: h.likes,
              numeric=True),
    HubColumn("License", "The license its card declares",
              lambda h: h.license or "", lambda h: h.license or ""),
    HubColumn("Gated", "Whether the repo asks you to accept its conditions (and a token) first",
              lambda h: "gated" if h.gated else "", lambda h: bool(h.gated)),
    HubColumn("Architecture", "The architecture its config names",
              lambda h: h.architecture or "", lambda h: h.architecture or ""),
    HubColumn("Updated", "When the repo last changed (UTC)",
              lambda h: (h.updated or "")[:10], lambda h: h.updated or ""),
    HubColumn("Formats", "The weights it has: safetensors, GGUF",
              lambda h: ", ".join(h.formats), lambda h: ", ".join(h.formats)),
)  # fmt: skip


class HubResultsModel(QAbstractTableModel):
    """One row per ``SearchHit``: repo, parameters, the F16 and stock-mix sizes, the rest."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.hits: tuple[SearchHit, ...] = ()
        self.mixes: tuple[str, ...] = ()
        self.columns: tuple[HubColumn, ...] = (*HEAD, _size_column("F16"), *TAIL)

    def set_hits(self, hits: Sequence[SearchHit]) -> None:
        self.beginResetModel()
        self.hits = tuple(hits)
        mixes: dict[str, None] = {}
        for h in self.hits:
            mixes.update(dict.fromkeys(h.est_sizes))
        self.mixes = tuple(mixes)
        sizes = tuple(_size_column(m) for m in ("F16", *self.mixes))
        self.columns = HEAD + sizes + TAIL
        self.endResetModel()

    def hit(self, row: int) -> SearchHit:
        return self.hits[row]

    def column_of(self, title: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.title == title)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.hits)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        hit, col = self.hits[index.row()], self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return col.text(hit)
        if role == Qt.ItemDataRole.UserRole:
            return col.key(hit)
        if role == Qt.ItemDataRole.TextAlignmentRole and col.numeric:
            return RIGHT
        if role == Qt.ItemDataRole.ForegroundRole and col.mix is not None:
            fit = hit.fits.get(col.mix)
            return None if fit is None else FIT_COLOUR[bool(fit)]
        if role == Qt.ItemDataRole.ToolTipRole:
            if col.mix is not None:
                return hit.estimate_note or "An estimate from the parameter count"
            if col.title == "Gated" and hit.gated:
                return "Accept the repo's conditions on the Hub, then log in with a token"
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.columns[section].tip
        return None


class HubResultsProxy(QSortFilterProxyModel):
    """Sorts by the raw values (``Qt.UserRole``)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(Qt.ItemDataRole.UserRole)
