"""The Plan step against the core, on the real SmolLM2 and its golden imatrix.

Auto for a file-size budget → a mouse drag on one cell, on a selection and on a row header
changes exactly those tensors along their ladders (``step_plan``), and the readouts equal the
core's ``ReadoutContext.readout`` of the new plan → undo restores the plan bit for bit, redo
re-applies it → named plans survive close and reopen → Quantize writes exactly the planned
effective types and records the variant. Cancel during Auto and quantize leaves no file and a
responsive window; bad input (another model's plan, an unknown type, an unusable output)
gets a message and changes nothing.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from heartbeat import Heartbeat
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QWidget

import fixtures
from lwq_app.core.jobs import Phase
from lwq_app.core.modelfile import open_model
from lwq_app.core.optimize import BpwBudget, ReadoutContext
from lwq_app.core.plan import (
    plan_from_preset,
    plan_grid,
    plan_ladders,
    predict_file_size,
    step_plan,
)
from lwq_app.core.results.workspace import attach_imatrix
from lwq_app.gui.context import Step
from lwq_app.gui.main_window import MainWindow
from lwq_app.gui.tour import mouse
from lwq_app.gui.views.auto_panel import FILE_SIZE
from lwq_app.gui.views.plan_grid import STEP_PX
from lwq_app.gui.views.plan_view import PlanView

OPEN_TIMEOUT = 120_000
JOB_TIMEOUT = 300_000  # ms: the sensitivity of every candidate type, 32 rows per tensor
MAX_GAP_MS = 500
TEMP_NAMES = (".lwq-tmp", ".part")


def drag(qtbot, widget: QWidget, start: QPoint, dy: int) -> None:
    """Press at ``start``, move up (``dy`` < 0) or down in small steps, release."""
    left = Qt.MouseButton.LeftButton
    mouse(widget, QMouseEvent.Type.MouseButtonPress, start, left)
    step = -4 if dy < 0 else 4
    for y in range(step, dy + step, step):
        mouse(
            widget,
            QMouseEvent.Type.MouseMove,
            start + QPoint(0, max(dy, y) if dy < 0 else min(dy, y)),
            left,
        )
        qtbot.wait(1)
    mouse(
        widget, QMouseEvent.Type.MouseButtonRelease, start + QPoint(0, dy), Qt.MouseButton.NoButton
    )


def _open_with_imatrix(qtbot, w: MainWindow, model: Path, imatrix: Path) -> None:
    with qtbot.waitSignal(w.ctx.session.opened, timeout=OPEN_TIMEOUT):
        w.open_path(model)
    s = w.ctx.session
    s.set_state(attach_imatrix(s.folder, s.state, imatrix, s.model))


def _plan_page(qtbot, w: MainWindow) -> PlanView:
    w.go_to(Step.PLAN)
    page = w.page(Step.PLAN)
    assert isinstance(page, PlanView)
    qtbot.waitUntil(lambda: page.plan_actions.predictor is not None, timeout=JOB_TIMEOUT)
    qtbot.waitUntil(lambda: not w.ctx.runner.running, timeout=JOB_TIMEOUT)
    return page


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, window_factory: Callable[..., Any]):
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    return window_factory(quick=True)


def _core_readout(w: MainWindow, page: PlanView, plan: Any) -> Any:
    s = w.ctx.session
    ctx = ReadoutContext(
        s.model, with_imatrix=True, fit=page.plan_actions.fit, predictor=page.plan_actions.predictor,
        imatrix=s.state.imatrix,
    )  # fmt: skip
    return ctx.readout(plan)


@pytest.mark.slow
def test_auto_drag_undo_quantize_and_reopen(
    qtbot, window, window_factory, smollm2: Path, golden_imatrix: Path, tmp_path: Path
) -> None:
    w = window
    _open_with_imatrix(qtbot, w, smollm2, golden_imatrix)
    page = _plan_page(qtbot, w)
    model = w.ctx.session.model
    imatrix = w.ctx.session.state.imatrix

    # Auto for the stock Q4_K_M file's size on disk
    stock = plan_from_preset(model, "Q4_K_M", with_imatrix=True)
    budget = predict_file_size(stock, model, imatrix=imatrix).total
    page.auto.set_kind(FILE_SIZE, f"{budget}B")
    with qtbot.waitSignal(page.editor.plan_changed, timeout=JOB_TIMEOUT):
        page.auto.button.click()
    auto = page.editor.plan
    assert auto.requested_types() != stock.requested_types()
    assert predict_file_size(auto, model, imatrix=imatrix).total <= budget
    assert page.readouts.readout == _core_readout(w, page, auto)
    ladders = plan_ladders(auto, True)

    # one cell, two steps up
    grid = page.grid
    name = "blk.3.ffn_down.weight"
    layout = plan_grid(auto)  # the core's layout of the grid
    i, j = layout.position(name)
    drag(qtbot, grid.canvas(), grid.cell_center(i, j), -2 * STEP_PX - STEP_PX // 2)
    one = step_plan(auto, [name], 2, ladders)
    assert page.editor.plan.requested_types() == one.requested_types()
    assert page.readouts.readout == _core_readout(w, page, one)
    assert page.readouts.texts()["kld"] != "—"

    # a selection, one step down
    picked = ["blk.10.attn_q.weight", "blk.10.attn_k.weight", "blk.11.attn_q.weight"]
    grid.select_names(picked)
    pi, pj = layout.position(picked[0])
    drag(qtbot, grid.canvas(), grid.cell_center(pi, pj), STEP_PX + STEP_PX // 2)
    two = step_plan(one, picked, -1, ladders)
    assert page.editor.plan.requested_types() == two.requested_types()

    # a whole layer (row header), one step up
    row = layout.layers.index(20)
    drag(qtbot, grid.canvas(), grid.row_header_center(row), -STEP_PX - STEP_PX // 2)
    three = step_plan(two, layout.row_names(row), 1, ladders)
    assert page.editor.plan.requested_types() == three.requested_types()
    changed = {n for n, t in three.requested_types().items() if t != two.requested_types()[n]}
    assert changed and changed <= set(layout.row_names(row))
    assert page.readouts.readout == _core_readout(w, page, three)
    shown = plan_grid(three)
    assert grid.displayed_types()[row] == [
        "" if c is None else c.effective for c in shown.cells[row]
    ]

    # undo back to Auto's plan, bit for bit, and redo
    undo = w.ctx.undo
    for _ in range(3):
        undo.undo()
    assert page.editor.plan == auto
    assert page.editor.plan.requested_types() == auto.requested_types()
    for _ in range(3):
        undo.redo()
    assert page.editor.plan.requested_types() == three.requested_types()

    # a second named plan, quantized
    assert page.editor.save_as("squeezed")
    out = tmp_path / "out" / "smollm2-squeezed.gguf"
    out.parent.mkdir()
    job = page.plan_actions.quantize(out)
    qtbot.waitUntil(lambda: job.done, timeout=JOB_TIMEOUT)
    written = open_model(out)
    assert {t.name: t.type for t in written.tensors if t.name in three.effective_types()} == {
        n: t for n, t in three.effective_types().items()
    }
    variants = w.ctx.session.state.variants
    assert [v.path for v in variants] == [out] and variants[0].plan_name == "squeezed"
    assert variants[0].file_bytes == out.stat().st_size
    assert predict_file_size(three, model, imatrix=imatrix, output=out).total == out.stat().st_size
    assert all(thread != "MainThread" for _t, thread in w.ctx.runner.calls)

    # close and reopen: both named plans are there, the last one edited is shown
    names = page.editor.names()
    w.close()
    qtbot.waitUntil(lambda: w.shutdown.done, timeout=10_000)
    again = window_factory(quick=True)
    with qtbot.waitSignal(again.ctx.session.opened, timeout=OPEN_TIMEOUT):
        again.open_path(smollm2)
    p2 = again.page(Step.PLAN)
    assert p2.editor.names() == names and set(names) == {"plan 1", "squeezed"}
    assert p2.editor.plan.requested_types() == three.requested_types()
    assert again.ctx.session.state.variants == variants
    again.ctx.runner.cancel_all()


@pytest.mark.slow
def test_cancel_auto_and_quantize_leave_nothing(
    qtbot, window, smollm2: Path, golden_imatrix: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    w = window
    _open_with_imatrix(qtbot, w, smollm2, golden_imatrix)
    page = _plan_page(qtbot, w)
    before = page.editor.plan
    steps = w.ctx.undo.count()

    # Auto over a sensitivity not cached yet (more rows than the page measured)
    monkeypatch.setattr(page.plan_actions, "_rows", lambda: 48)
    hb = Heartbeat().start()
    job = page.plan_actions.run_auto(BpwBudget(4.5))
    qtbot.waitUntil(lambda: job.progress is not None and job.progress.phase is Phase.MEASURE,
                    timeout=JOB_TIMEOUT)  # fmt: skip
    job.cancel.cancel()
    qtbot.waitUntil(lambda: job.done, timeout=30_000)
    assert page.editor.plan is before and w.ctx.undo.count() == steps

    out = tmp_path / "cancelled.gguf"
    q = page.plan_actions.quantize(out)

    def quantizing() -> bool:
        p = q.progress
        return p is not None and p.phase is Phase.QUANTIZE and p.fraction > 0.1

    qtbot.waitUntil(quantizing, timeout=JOB_TIMEOUT)
    q.cancel.cancel()
    qtbot.waitUntil(lambda: q.done, timeout=30_000)
    hb.stop()
    assert hb.max_gap_ms < MAX_GAP_MS, hb.summary()
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith("cancelled")]
    assert left == [] and not any(n in str(p) for p in tmp_path.rglob("*") for n in TEMP_NAMES)
    assert w.ctx.session.state.variants == ()
    drag(qtbot, page.grid.canvas(), page.grid.cell_center(0, 0), -STEP_PX - 4)  # still usable
    assert page.editor.plan is not before


def test_bad_input_gets_a_message_and_changes_nothing(
    qtbot, window, smollm2: Path, golden_imatrix: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    w = window
    _open_with_imatrix(qtbot, w, smollm2, golden_imatrix)
    w.go_to(Step.PLAN)
    page = w.page(Step.PLAN)
    qtbot.waitUntil(lambda: page.editor.plan is not None, timeout=OPEN_TIMEOUT)
    before, steps = page.editor.plan, w.ctx.undo.count()

    other = open_model(fixtures.synthetic("gqa4-untied"))
    foreign = tmp_path / "other-model.plan.json"
    plan_from_preset(other, "Q4_K_M").save(foreign)
    recipe = tmp_path / "bad.tensor-types.txt"
    recipe.write_text("^blk\\.0\\.attn_q\\.weight$=q4_k\n^blk\\.1\\.attn_q\\.weight$=Q9_Z\n")
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    cases = [
        (lambda: page.plan_actions.load_plan(foreign), foreign.name),
        (lambda: page.plan_actions.import_recipe(recipe, "Q4_K_M"), ":2"),
        (lambda: page.plan_actions.quantize(not_a_folder / "out.gguf"), "a-file"),
        (lambda: page.plan_actions.quantize(tmp_path), str(tmp_path)),
        (lambda: page.plan_actions.quantize(full / "out.gguf"), "not enough disk space"),
    ]
    full = tmp_path / "full"  # a file system with 1 MiB free (the only simulated part)
    full.mkdir()
    real_usage = shutil.disk_usage

    def usage(path: Any) -> Any:
        u = real_usage(path)
        return u._replace(free=1 << 20) if Path(path) == full else u

    monkeypatch.setattr(shutil, "disk_usage", usage)
    for start, named in cases:
        n = len(w.ctx.notifier.messages)
        job = start()
        qtbot.waitUntil(lambda job=job: job.done, timeout=60_000)
        assert len(w.ctx.notifier.messages) == n + 1
        texts = w.message_bar.texts()  # the newest first: what the user sees
        assert named in texts[0], texts[:2]
        assert page.editor.plan is before and w.ctx.undo.count() == steps
    assert list(not_a_folder.parent.glob("*.gguf")) == [] and w.ctx.session.state.variants == ()
    assert list(full.iterdir()) == []


def test_table_keys_menu_and_overlay_are_the_same_commands(
    qtbot, window, smollm2: Path, golden_imatrix: Path
) -> None:
    """The Table's type combo, ``+``/``−`` on a selection and the context menu's Set type are
    undo steps like a drag; the importance overlay shows the core's values per tensor."""
    from PySide6.QtTest import QTest

    from lwq_app.core.importance import STAT_FIELDS, heatmap_for, tensor_values
    from lwq_app.gui.views.plan_table import PlanColumn

    w = window
    _open_with_imatrix(qtbot, w, smollm2, golden_imatrix)
    page = _plan_page(qtbot, w)
    start, steps = page.editor.plan, w.ctx.undo.count()
    ladders = plan_ladders(start, True)

    # the Table: what the type combo commits is one undo step
    page.tabs.setCurrentIndex(1)
    name = "blk.7.attn_v.weight"
    row = page.model.row_of(name)
    page.model.setData(page.model.index(row, PlanColumn.REQUESTED), "Q8_0")
    assert page.editor.plan.requested_types()[name] == "Q8_0"
    assert page.model.tensor(row).requested == "Q8_0" and w.ctx.undo.count() == steps + 1
    page.tabs.setCurrentIndex(0)

    # + on a clicked cell steps it along its ladder
    grid, layout = page.grid, plan_grid(page.editor.plan)
    i, j = layout.position("blk.2.ffn_up.weight")
    QTest.mouseClick(grid.canvas(), Qt.MouseButton.LeftButton, pos=grid.cell_center(i, j))
    assert grid.selected_names() == ["blk.2.ffn_up.weight"]
    before = page.editor.plan
    QTest.keyClick(grid.canvas(), Qt.Key.Key_Plus)
    want = step_plan(before, ["blk.2.ffn_up.weight"], 1, ladders)
    assert page.editor.plan.requested_types() == want.requested_types()
    QTest.keyClick(grid.canvas(), Qt.Key.Key_Minus)  # back down: the same effective type
    assert page.editor.plan.effective_types() == before.effective_types()
    assert w.ctx.undo.count() == steps + 3

    # the context menu's Set type, on a layer
    names = layout.row_names(5)
    page._context_menu(names, grid.canvas().mapToGlobal(grid.row_header_center(5)))
    menu = page.context_menu
    sub = next(a.menu() for a in menu.actions() if a.menu() is not None)
    assert [a.text() for a in sub.actions()] == list(
        __import__("lwq_app.core.plan", fromlist=["ladder_union"]).ladder_union(ladders, names)
    )
    next(a for a in sub.actions() if a.text() == "Q8_0").trigger()
    menu.close()
    plan = page.editor.plan
    assert all(plan.requested_types()[n] == "Q8_0" for n in names)
    assert w.ctx.undo.count() == steps + 4
    w.ctx.undo.undo()
    assert page.editor.plan.effective_types() == before.effective_types()

    # the importance overlay: the heatmap's values by tensor, from the core
    page.overlay.setCurrentIndex(page.overlay.findData(STAT_FIELDS[0]))
    qtbot.waitUntil(grid.overlay_shown, timeout=60_000)
    stats = page.plan_actions.stats
    assert grid._values == tensor_values(heatmap_for(stats, STAT_FIELDS[0], w.ctx.session.model))
