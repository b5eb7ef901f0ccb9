"""Save and edit the user's hardware profiles (the core's ``hardware-profiles.json`` in the data folder).

The built-in profiles are not listed: a user profile of a built-in's name replaces it. The
dialog writes through ``save_profiles``, which checks every entry; an error is reported and
the dialog stays open.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.evaluate.hardware import profiles_path
from lwq_app.core.evaluate.targets import (
    HardwareProfile,
    TargetSpec,
    load_profiles,
    save_profiles,
)
from lwq_app.core.jobs import LwqError

from ..notifier import Notifier
from .fit_chart import GIB

#: the name of the profile made from the device list (not one the user can save)
THIS_MACHINE = "This machine"
BACKENDS = ("CPU", "CUDA", "Metal", "Vulkan", "HIP", "SYCL")
_COLUMNS = ("Name", "Backend", "GPU memory", "RAM", "Unified", "Description")


def _gib_spin(value: int, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0, 4096)
    spin.setDecimals(2)
    spin.setSuffix(" GiB")
    spin.setValue(value / GIB)
    spin.setToolTip(tip)
    return spin


def user_profiles(notifier: Notifier) -> list[HardwareProfile]:
    """The user's profiles (none, with the error reported, if their file is damaged)."""
    try:
        return [p for p in load_profiles() if not p.builtin]
    except LwqError as e:
        notifier.report(e, "Read the hardware profiles")
        return []


def save_as_profile(parent: QWidget, spec: TargetSpec, notifier: Notifier) -> str | None:
    """Ask for a name and keep ``spec``'s memories as a user profile; the name, if saved."""
    name, ok = QInputDialog.getText(parent, "Save as profile", "Profile name:")
    name = name.strip()
    if not ok or not name or name == THIS_MACHINE:
        return None
    p = HardwareProfile(name, spec.backend, spec.device_memory, spec.host_memory,
                        spec.unified, f"saved from {spec.profile}")  # fmt: skip
    others = [u for u in user_profiles(notifier) if u.name != name]
    try:
        save_profiles([*others, p])
    except LwqError as e:
        notifier.report(e, "Save the hardware profile")
        return None
    return name


class ProfileEditorDialog(QDialog):
    """A table of the user's profiles: add, change, remove; Save writes the file."""

    def __init__(
        self, profiles: Sequence[HardwareProfile], notifier: Notifier, parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hardware profiles")
        self._notifier = notifier
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(
            len(_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch
        )
        self.table.setToolTip("Your profiles; one named like a built-in one replaces it")
        for p in profiles:
            self._add_row(p)
        add = QPushButton("Add")
        add.setToolTip("A new profile, to fill in")
        add.clicked.connect(lambda: self._add_row(None))
        remove = QPushButton("Remove")
        remove.setToolTip("Remove the selected profiles")
        remove.clicked.connect(self._remove_rows)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        box.accepted.connect(self._save)
        box.rejected.connect(self.reject)
        where = QLabel(f"Kept in {profiles_path()}")
        where.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addWidget(where)
        layout.addWidget(box)
        self.resize(820, 360)

    def _add_row(self, p: HardwareProfile | None) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setItem(r, 0, QTableWidgetItem(p.name if p else "New profile"))
        backend = QComboBox()
        backend.setEditable(True)
        backend.addItems(BACKENDS)
        backend.setCurrentText(p.backend if p else "CPU")
        backend.setToolTip("The llama.cpp backend the machine runs")
        self.table.setCellWidget(r, 1, backend)
        self.table.setCellWidget(
            r, 2, _gib_spin(p.device_memory if p else 0, "The GPU's memory (0 without a GPU)")
        )
        self.table.setCellWidget(r, 3, _gib_spin(p.host_memory if p else 8 * int(GIB), "RAM"))
        unified = QCheckBox()
        unified.setChecked(p.unified if p else False)
        unified.setToolTip("One memory shared by GPU and CPU (Apple silicon)")
        self.table.setCellWidget(r, 4, unified)
        self.table.setItem(r, 5, QTableWidgetItem(p.description if p else ""))

    def _remove_rows(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(r)

    def profiles(self) -> list[HardwareProfile]:
        """The profiles as the table shows them."""
        out = []
        for r in range(self.table.rowCount()):
            name = self.table.item(r, 0)
            desc = self.table.item(r, 5)
            backend = self.table.cellWidget(r, 1)
            device = self.table.cellWidget(r, 2)
            host = self.table.cellWidget(r, 3)
            unified = self.table.cellWidget(r, 4)
            assert isinstance(backend, QComboBox) and isinstance(unified, QCheckBox)
            assert isinstance(device, QDoubleSpinBox) and isinstance(host, QDoubleSpinBox)
            out.append(
                HardwareProfile(
                    name=name.text().strip() if name else "",
                    backend=backend.currentText().strip(),
                    device_memory=round(device.value() * GIB),
                    host_memory=round(host.value() * GIB),
                    unified=unified.isChecked(),
                    description=desc.text() if desc else "",
                )
            )
        return out

    def _save(self) -> None:
        try:
            save_profiles(self.profiles())
        except LwqError as e:
            self._notifier.report(e, "Save the hardware profiles")
            return
        self.accept()
