"""The plan being edited, its named siblings in the project, and every edit as an undo step.

``PlanEditor`` holds the current ``QuantPlan`` (the core's immutable plan) and the name it is
kept under in the project (``ProjectState.plans``). Every change — a drag, a key, a type set in
the table, a preset, Auto, an import — is ``apply(new_plan, text)``: one ``PlanEditCommand`` on
the window's ``QUndoStack``, so undo restores the plan bit for bit and redo re-applies it.
A drag in progress is only ``preview``ed (shown, never stored) until it is released; then it
is one command. Each applied plan is written into the project state at once (the session
autosaves), so nothing is lost when the window closes.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand

from lwq_app.core.jobs import LwqError
from lwq_app.core.modelfile import ModelInfo
from lwq_app.core.plan import QuantPlan, plan_from_preset
from lwq_app.core.results.project import project_plan, project_plans

from .context import AppContext

#: the plan a new project starts with, and its name
FIRST_PRESET = "Q4_K_M"
FIRST_NAME = "plan 1"


class PlanEditCommand(QUndoCommand):
    """One edit of the plan named ``name``: ``before`` → ``after``."""

    def __init__(
        self, editor: PlanEditor, name: str, before: QuantPlan, after: QuantPlan, text: str
    ):
        super().__init__(text)
        self._editor, self._name = editor, name
        self.before, self.after = before, after

    def redo(self) -> None:
        self._editor._set(self._name, self.after)

    def undo(self) -> None:
        self._editor._set(self._name, self.before)


class PlanEditor(QObject):
    """The current plan of the open project and its undoable edits."""

    plan_changed = Signal(object)  # QuantPlan: applied (stored) or undone/redone
    previewed = Signal(object)  # QuantPlan: shown while a drag is in progress (not stored)
    plans_changed = Signal()  # the set of named plans (or the current name) changed

    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self.plan: QuantPlan | None = None
        self.name: str = FIRST_NAME
        self.model: ModelInfo | None = None
        ctx.session.opened.connect(self._on_opened)
        ctx.session.closed.connect(self._on_closed)

    # -- the project's plans ------------------------------------------------------------------
    def names(self) -> list[str]:
        state = self._ctx.session.state
        return [] if state is None else list(state.plans)

    def _on_opened(self) -> None:
        session = self._ctx.session
        model, state = session.model, session.state
        if model is None or state is None:
            return
        self.model = model
        try:
            plans = project_plans(state, model)
        except LwqError as e:  # reported; editing starts from a fresh plan 1 (the project
            self._ctx.notifier.report(e, "Read the project's plans")  # keeps the others)
            plans = {}
        if plans:
            self.name, plan = next(reversed(plans.items()))
        else:
            self.name = FIRST_NAME
            plan = plan_from_preset(model, FIRST_PRESET, with_imatrix=state.imatrix is not None)
            self._store(self.name, plan)
        self.plan = plan
        self.plans_changed.emit()
        self.plan_changed.emit(plan)

    def _on_closed(self) -> None:
        self.plan, self.model, self.name = None, None, FIRST_NAME
        self._ctx.undo.clear()  # the commands hold plans of the closed project
        self.plans_changed.emit()
        self.plan_changed.emit(None)

    def _store(self, name: str, plan: QuantPlan) -> None:
        state = self._ctx.session.state
        if state is not None:
            self._ctx.session.set_state(state.with_plan(name, plan))

    def _set(self, name: str, plan: QuantPlan) -> None:
        """What a command does: make ``plan`` the plan ``name`` and show it."""
        self._store(name, plan)
        if name != self.name:
            self.name = name
            self.plans_changed.emit()
        self.plan = plan
        self.plan_changed.emit(plan)

    # -- edits ----------------------------------------------------------------------------------
    def apply(self, plan: QuantPlan, text: str) -> bool:
        """Make ``plan`` the current plan as one undo step (nothing when it is the same)."""
        if self.plan is None:
            return False
        if plan.requested_types() == self.plan.requested_types() and plan.note == self.plan.note:
            if plan is not self.plan:
                self.plan_changed.emit(self.plan)  # a preview ended where it started
            return False
        self._ctx.undo.push(PlanEditCommand(self, self.name, self.plan, plan, text))
        return True

    def preview(self, plan: QuantPlan) -> None:
        """Show ``plan`` while a drag is in progress; ``apply`` or ``cancel_preview`` ends it."""
        self.previewed.emit(plan)

    def cancel_preview(self) -> None:
        if self.plan is not None:
            self.plan_changed.emit(self.plan)

    # -- named plans ----------------------------------------------------------------------------
    def switch_to(self, name: str) -> None:
        """Edit the project's plan ``name`` (not an edit: nothing is pushed on the undo stack)."""
        state, model = self._ctx.session.state, self.model
        if state is None or model is None or name == self.name:
            return
        try:
            plan = project_plan(state, model, name)
        except (LwqError, KeyError) as e:
            self._ctx.notifier.report(e, f"Open the plan {name!r}")
            return
        self.name, self.plan = name, plan
        self.plans_changed.emit()
        self.plan_changed.emit(plan)

    def save_as(self, name: str) -> bool:
        """Keep the current plan under a new ``name`` as well, and go on editing that one."""
        state = self._ctx.session.state
        if state is None or self.plan is None:
            return False
        try:
            self._ctx.session.set_state(state.with_plan(name, self.plan))
        except LwqError as e:
            self._ctx.notifier.report(e, "Name the plan")
            return False
        self.name = name
        self.plans_changed.emit()
        return True
