"""The Plan step: shape the per-tensor plan on the layers × kinds grid and see its price.

The page shows the ``PlanEditor``'s plan in two views — the grid (``PlanGridView``: drag a
cell, a selection, a layer or a kind up or down) and the table (``PlanTableModel``) — and the
core's readouts for it (``ReadoutContext.readout``: size on disk, bpw, fit on the target,
nearest stock mix, predicted KLD). Every domain answer is the core's: a drag of ``n`` steps is
``step_plan`` along each tensor's ``plan_ladders`` ladder, the grid is ``plan_grid``, the
overlay ``tensor_values`` of an importance or sensitivity heatmap. A drag is previewed live
and becomes one undo step on release. The jobs (sensitivity, target fit, Auto, calibrate,
quantize, file reads) start in ``PlanActions`` through the worker bridge.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.importance import STAT_FIELDS, heatmap_for, tensor_values
from lwq_app.core.jobs import LwqError, format_size
from lwq_app.core.plan import (
    QUANT_PRESETS,
    QuantPlan,
    diff_plans,
    ladder_union,
    plan_from_preset,
    plan_grid,
    plan_ladders,
    step_plan,
)

from ..context import AppContext, Step
from ..plan_editor import PlanEditor
from .auto_panel import AutoPanel
from .plan_actions import PlanActions
from .plan_grid import PlanGridView
from .plan_readout import PlanReadoutBar
from .plan_table import PlanColumn, PlanTableModel, TypeComboDelegate, plan_filter_proxy

#: the overlays offered over the grid: (key, label); keys are heatmap_for statistics
OVERLAYS = (
    ("", "No overlay"),
    (STAT_FIELDS[0], "Importance (imatrix)"),
    ("sensitivity:Q4_0", "Sensitivity (Q4_0 error)"),
)


class PlanView(QWidget):
    """The plan editor page."""

    done_changed = Signal(bool)
    plan_shown = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.editor = PlanEditor(ctx, self)
        self.plan_actions = PlanActions(ctx, self.editor, self)
        self._ladders: dict[str, tuple[str, ...]] = {}
        self._ladder_key: object = None
        self.shown_plan: QuantPlan | None = None

        self.plans = QComboBox()
        self.plans.setObjectName("plan_names")
        self.plans.setToolTip("The project's named plans; each edit is kept as you go")
        self.plans.activated.connect(lambda i: self.editor.switch_to(self.plans.itemText(i)))
        save_as = QPushButton("Save as…")
        save_as.setToolTip("Keep this plan under a new name in the project")
        save_as.clicked.connect(self.plan_actions.save_as_dialog)
        self.presets = QComboBox()
        self.presets.addItems(list(QUANT_PRESETS))
        self.presets.setCurrentText("Q4_K_M")
        self.presets.setToolTip("llama.cpp's stock mixes, exactly as llama-quantize writes them")
        apply_preset = QPushButton("Use preset")
        apply_preset.clicked.connect(lambda: self.apply_preset(self.presets.currentText()))
        self.auto = AutoPanel(self)
        self.auto.run_requested.connect(self.plan_actions.run_auto)
        self.auto.invalid.connect(lambda e: ctx.notifier.report(e, "Auto"))
        self.overlay = QComboBox()
        for key, label in OVERLAYS:
            self.overlay.addItem(label, key)
        # may shrink below its longest label (the list shows them whole), so the row with the
        # Quantize & check button still fits a 1280-pixel window
        self.overlay.setMinimumWidth(120)
        self.overlay.setToolTip("Draw importance or sensitivity over the plan: where bits go "
                                "against where they matter")  # fmt: skip
        self.overlay.currentIndexChanged.connect(lambda _i: self._update_overlay())
        files = QToolButton()
        files.setText("File")
        files.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        files.setMenu(self.plan_actions.file_menu(self))
        self.quantize_button = QPushButton("Quantize…")
        self.quantize_button.setObjectName("quantize_button")
        self.quantize_button.clicked.connect(self.plan_actions.quantize_dialog)
        self.check_button = QPushButton("Quantize && check…")
        self.check_button.setObjectName("quantize_check_button")
        self.check_button.setToolTip("Queue quantize, PPL/KLD against the F16 base and the "
                                     "bench of this plan on the Run step")  # fmt: skip
        self.check_button.clicked.connect(self.plan_actions.quantize_and_check_dialog)
        self.plan_actions.checks_queued.connect(self._show_run)
        top = QHBoxLayout()
        left: tuple[QWidget, ...] = (QLabel("Plan"), self.plans, save_as, self.presets,
                                     apply_preset, self.auto)  # fmt: skip
        right: tuple[QWidget, ...] = (QLabel("Overlay"), self.overlay, files,
                                      self.quantize_button, self.check_button)  # fmt: skip
        for w in left:
            top.addWidget(w)
        top.addStretch(1)
        for w in right:
            top.addWidget(w)

        self.grid = PlanGridView(self)
        self.grid.drag_previewed.connect(self._on_drag_preview)
        self.grid.drag_finished.connect(self._on_drag_finished)
        self.grid.drag_cancelled.connect(self.editor.cancel_preview)
        self.grid.step_requested.connect(self._on_drag_finished)
        self.grid.context_requested.connect(self._context_menu)
        self.model = PlanTableModel(self)
        self.model.type_edit_requested.connect(self.set_type)
        self.proxy = plan_filter_proxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setItemDelegateForColumn(PlanColumn.REQUESTED, TypeComboDelegate(self.table))
        self.table.verticalHeader().hide()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter tensors (name, kind, type)")
        self.filter.textChanged.connect(self.proxy.set_filter_text)
        table_page = QWidget()
        tl = QVBoxLayout(table_page)
        tl.addWidget(self.filter)
        tl.addWidget(self.table, 1)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.grid, "Grid")
        self.tabs.addTab(table_page, "Table")
        self.tabs.currentChanged.connect(lambda _i: self._update_table())
        self.readouts = PlanReadoutBar(self)
        self.readouts.calibrate_requested.connect(self.plan_actions.calibrate)
        self.diff_label = QLabel("")
        self.diff_label.setObjectName("plan_diff")
        self.diff_label.setToolTip("How this plan differs from the stock mix nearest in size")

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.readouts)
        lay.addWidget(self.diff_label)
        self.variants_label = QLabel("")
        self.variants_label.setObjectName("plan_variants")
        self.variants_label.setToolTip("The quantized files of this project (Results: #12)")
        self.variants_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.variants_label)

        self.editor.plan_changed.connect(self._on_plan_changed)
        self.editor.previewed.connect(self._show)
        self.editor.plans_changed.connect(self._update_names)
        self.plan_actions.inputs_changed.connect(self._refresh)
        ctx.session.state_changed.connect(self._on_state)

    # -- state ------------------------------------------------------------------------------
    def is_done(self) -> bool:
        return self.editor.plan is not None and bool(self.plan_actions.variants())

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.plan_actions.ensure_inputs()

    def _show_run(self) -> None:
        go_to = getattr(self.window(), "go_to", None)  # the main window's steps
        if callable(go_to):
            go_to(Step.RUN)

    def _on_state(self) -> None:
        state = self._ctx.session.state
        variants = () if state is None else state.variants
        self.variants_label.setText(
            "Quantized: " + " · ".join(
                f"{v.path.name} ({format_size(v.file_bytes)}, plan {v.plan_name!r})"
                for v in variants
            ) if variants else ""
        )  # fmt: skip
        self.auto.set_target(None if state is None else state.target)
        self.plan_actions.ensure_inputs(started=self.isVisible())
        self.done_changed.emit(self.is_done())

    def _update_names(self) -> None:
        self.plans.blockSignals(True)
        self.plans.clear()
        self.plans.addItems(self.editor.names())
        self.plans.setCurrentText(self.editor.name)
        self.plans.blockSignals(False)

    def ladders(self, plan: QuantPlan) -> dict[str, tuple[str, ...]]:
        """The core's ladders for ``plan``'s model (computed once per model and imatrix)."""
        key = (plan.model_fingerprint, self.plan_actions.with_imatrix())
        if key != self._ladder_key:
            self._ladders = plan_ladders(plan, self.plan_actions.with_imatrix())
            self._ladder_key = key
        return self._ladders

    # -- showing ----------------------------------------------------------------------------
    def _on_plan_changed(self, plan: QuantPlan | None) -> None:
        self._show(plan)
        if plan is None:
            self.model.set_plan(None, {})
            self.diff_label.setText("")
            return
        self._update_table()
        self._update_diff(plan)
        self.plan_shown.emit()

    def _update_table(self) -> None:
        """The Table tab's rows, only while it is shown: a reset of its sorted proxy reads
        every row through Python (200 ms for 80 layers, on open, on the GUI thread)."""
        plan = self.editor.plan
        if self.tabs.currentIndex() != 1 or plan is None:
            return
        predictor = self.plan_actions.predictor
        label = "Predicted ΔKLD" if predictor is None else predictor.predict(plan).label
        self.model.set_plan(
            plan, self.ladders(plan), None if predictor is None else predictor.tensor_cost, label
        )

    def _show(self, plan: QuantPlan | None) -> None:
        """Grid and readouts of ``plan`` (also a drag's preview: the table waits)."""
        self.shown_plan = plan
        if plan is None:
            self.grid.show_grid(None)
            self.readouts.show_readout(None)
            return
        self.grid.show_grid(plan_grid(plan))
        ctx = self.plan_actions.readout_context()
        self.readouts.show_readout(
            None if ctx is None else ctx.readout(plan),
            can_calibrate=self.plan_actions.can_calibrate(),
        )

    def _refresh(self) -> None:
        """The readouts' inputs changed (sensitivity, calibration, target fit)."""
        self._ladder_key = None
        self._on_plan_changed(self.editor.plan)
        self._update_overlay()

    def _update_diff(self, plan: QuantPlan) -> None:
        r, ctx = self.readouts.readout, self.plan_actions.readout_context()
        if r is None or ctx is None:
            self.diff_label.setText("")
            return
        d = diff_plans(ctx.preset_plan(r.nearest_preset), plan, r.nearest_preset, self.editor.name)
        self.diff_label.setText(
            f"vs {r.nearest_preset}: {len(d.changes)} tensor(s) differ, "
            f"{'+' if d.size_delta_bytes >= 0 else '−'}{format_size(abs(d.size_delta_bytes))} "
            "of tensor data"
            if d
            else f"the same types as {r.nearest_preset}"
        )

    def _update_overlay(self) -> None:
        key = self.overlay.currentData()
        model = self.editor.model
        source = self.plan_actions.overlay_source(key) if key else None
        if not key or model is None or source is None:
            self.grid.set_overlay(None)
            if key and model is not None:
                self.plan_actions.request_overlay(key)  # shown when the job ends (_refresh)
            return
        try:
            hm = heatmap_for(source, key, model)
        except (KeyError, TypeError, LwqError) as e:
            self._ctx.notifier.report(e, "Overlay")
            self.grid.set_overlay(None)
            return
        self.grid.set_overlay(tensor_values(hm), self.overlay.currentText())

    # -- edits ------------------------------------------------------------------------------
    def _stepped(self, names: Iterable[str], steps: int) -> QuantPlan | None:
        plan = self.editor.plan
        if plan is None:
            return None
        return step_plan(plan, list(names), steps, self.ladders(plan))

    def _on_drag_preview(self, names: list[str], steps: int) -> None:
        plan = self._stepped(names, steps)
        if plan is not None:
            self.editor.preview(plan)

    def _on_drag_finished(self, names: list[str], steps: int) -> None:
        plan = self._stepped(names, steps) if steps else self.editor.plan
        if plan is None:
            return
        what = names[0] if len(names) == 1 else f"{len(names)} tensors"
        self.editor.apply(plan, f"{what} {steps:+d} step{'s' if abs(steps) != 1 else ''}")

    def step_selection(self, steps: int) -> None:
        self._on_drag_finished(self.grid.selected_names(), steps)

    def set_type(self, name: str, type_name: str) -> None:
        self.set_types([name], type_name)

    def set_types(self, names: list[str], type_name: str) -> None:
        """``type_name`` for those of ``names`` whose ladder has it (others are kept)."""
        plan = self.editor.plan
        if plan is None:
            return
        ladders = self.ladders(plan)
        ok = [n for n in names if type_name in ladders.get(n, ())]
        if len(ok) < len(names):
            self._ctx.notifier.info(
                "Set type",
                f"{type_name} does not fit {len(names) - len(ok)} of the selected tensors "
                "(their rows are not a multiple of its block, or it needs an imatrix); "
                "they keep their types",
            )
        if ok:
            what = ok[0] if len(ok) == 1 else f"{len(ok)} tensors"
            self.editor.apply(
                plan.with_types(dict.fromkeys(ok, type_name)), f"{what} → {type_name}"
            )

    def apply_preset(self, name: str) -> None:
        model = self.editor.model
        if model is not None:
            plan = plan_from_preset(model, name, self.plan_actions.with_imatrix())
            self.editor.apply(plan, f"Preset {name}")

    def _context_menu(self, names: list[str], pos: QPoint) -> None:
        plan = self.editor.plan
        if plan is None or not names:
            return
        menu = QMenu(self)
        sub = menu.addMenu("Set type")
        for t in ladder_union(self.ladders(plan), names):
            sub.addAction(t, partial(self.set_types, names, t))
        menu.addAction("More bits (+)", lambda: self._on_drag_finished(names, 1))
        menu.addAction("Fewer bits (−)", lambda: self._on_drag_finished(names, -1))
        menu.popup(pos)
        self.context_menu: Any = menu  # kept for tests
