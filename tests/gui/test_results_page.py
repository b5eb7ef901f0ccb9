"""The Results step on the real window, with variants of SmolLM2 really quantized and measured.

The variants come from ``recorded_results`` (stock Q4_K_M and Q8_0, a custom plan; 2 chunks,
20 tasks per benchmark, bench -r 1 -p 64 -n 16) and are added from disk through the page →
the table shows exactly the core's figures (raw values, and each text is ``format_cell``'s)
→ the scatter's points and Pareto front are the core's; clicking a point selects its row,
hovering names it → the speed columns show the bench records' mean and σ → the model card and
the PNG figures are written → a foreign GGUF added from disk is refused with a message naming
it, and the project is unchanged. ``LWQ_RESULTS_SHOTS=DIR`` saves screenshots of each tab.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QMouseEvent
from recorded_results import recorded

import fixtures
from lwq_app.core.results.charts import (
    pareto_front,
    pareto_steps,
    scatter_points,
    speed_bars,
    task_bars,
)
from lwq_app.core.results.compare import format_cell, results_table
from lwq_app.core.results.eval_settings import TaskSetting
from lwq_app.core.results.plan_diff import variants_diff
from lwq_app.core.results.report import render_card, table_text
from lwq_app.core.results.store import load_results
from lwq_app.core.results.variants import nearest_stock_mixes, stock_mix_output
from lwq_app.core.results.workspace import attach_imatrix
from lwq_app.gui.context import Step
from lwq_app.gui.notifier import Level
from lwq_app.gui.tour import mouse
from lwq_app.gui.views.eval_settings_dialog import EvalSettingsDialog
from lwq_app.gui.views.results_scatter import MB
from lwq_app.gui.views.results_view import FIGURES, ResultsView

OPEN_TIMEOUT = 120_000
JOB_TIMEOUT = 60_000


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, window_factory: Callable[..., Any]):
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    return window_factory(quick=True)


def _idle(qtbot, w) -> None:
    qtbot.waitUntil(lambda: not w.ctx.runner.running, timeout=JOB_TIMEOUT)


def _click(qtbot, widget, pos: QPoint) -> None:
    left = Qt.MouseButton.LeftButton
    qtbot.wait(20)  # pyqtgraph drops moves closer than 10 ms (mouseRateLimit)
    mouse(widget, QMouseEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton)
    mouse(widget, QMouseEvent.Type.MouseButtonPress, pos, left)
    mouse(widget, QMouseEvent.Type.MouseButtonRelease, pos, Qt.MouseButton.NoButton)
    qtbot.wait(10)


@pytest.mark.slow
def test_results_page_shows_the_cores_figures(
    qtbot,
    window,
    smollm2: Path,
    golden_imatrix: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = recorded(smollm2, golden_imatrix)
    w = window
    with qtbot.waitSignal(w.ctx.session.opened, timeout=OPEN_TIMEOUT):
        w.open_path(smollm2)
    s = w.ctx.session
    s.set_state(attach_imatrix(s.folder, s.state, golden_imatrix, s.model))
    s.update(eval_settings=rec.settings)
    _idle(qtbot, w)
    w.go_to(Step.RESULTS)
    page = w.page(Step.RESULTS)
    assert isinstance(page, ResultsView)
    for p in rec.variants:
        with qtbot.waitSignal(s.state_changed, timeout=JOB_TIMEOUT):
            page.variants.add_from_disk(p)
    qtbot.waitUntil(
        lambda: page.table is not None and len(page.table.rows) == 4, timeout=JOB_TIMEOUT
    )
    _idle(qtbot, w)
    assert [v.path for v in s.state.variants] == [p.resolve() for p in rec.variants]

    # the table: exactly the core's figures and texts
    core = results_table(s.state, s.model, rec.settings)
    assert page.table == core
    model = page.results.results
    assert model.rowCount() == len(core.rows) and model.columnCount() == len(core.columns)
    for i, row in enumerate(core.rows):
        for j, col in enumerate(core.columns):
            idx = model.index(i, j)
            assert model.data(idx) == format_cell(row, col), (row.name, col.key)
            assert model.data(idx, Qt.ItemDataRole.UserRole) == row.cell(col.key).value
    for i, path in enumerate(rec.variants, start=1):
        stored = load_results(path)
        kld = core.column("kld")
        assert model.data(model.index(i, core.columns.index(kld)), Qt.ItemDataRole.UserRole) == (
            stored.evals[0].result.stats.kld
        )
        for b in stored.bench:  # the speed columns: the bench record's mean and σ
            j = core.columns.index(core.column(f"speed:{b.record.test_name}"))
            assert model.data(model.index(i, j)) == (
                f"{b.record.avg_ts:.2f} ± {b.record.stddev_ts:.2f}"
            )
            assert model.data(model.index(i, j), Qt.ItemDataRole.UserRole) == b.record.avg_ts

    # the scatter: the core's points and front
    page.tabs.setCurrentWidget(page.scatter)
    qtbot.wait(50)
    sc = page.scatter
    points = scatter_points(core)
    assert sc.points == points and sc.front == pareto_front(points)
    assert sorted(sc.plotted()) == sorted((p.size / MB, p.kld) for p in points)
    xs, ys = pareto_steps(sc.front)
    assert sc.front_line_data() == ([x / MB for x in xs], ys)
    viewport = sc.plot.viewport()
    for p in points:  # click selects its row; hover names it
        pos = sc.viewport_pos(p).toPoint()
        _click(qtbot, viewport, pos)
        assert page.results.selected_rows() == [p.row]
        assert sc.hovered is not None and sc.hovered.name == p.name
        assert sc.label.textItem.toPlainText().startswith(p.name)
        assert page.variants.current() == core.rows[p.row]
    page.results.select_row(1)  # and a row selected in the table rings its point
    x, y = sc.ring.getOriginalDataset()
    assert list(x) == [points[0].size / MB] and list(y) == [points[0].kld]
    qtbot.wait(20)
    mouse(viewport, QMouseEvent.Type.MouseMove, QPoint(3, 3), Qt.MouseButton.NoButton)
    assert sc.hovered is None

    # bars and the plan diff are the core's (a figure is drawn when its tab is shown)
    page.tabs.setCurrentWidget(page.bars)
    assert page.bars.tasks.chart == task_bars(core) and page.bars.speed.chart == speed_bars(core)
    assert page.bars.tasks.chart is not None and len(page.bars.tasks.drawn) == 2
    assert page.bars.speed.drawn[1][1] == [core.rows[i].speed["tg16"].avg_ts for i in (1, 2, 3)]
    page.tabs.setCurrentWidget(page.diff)
    with qtbot.waitSignal(page.diff.diff_shown, timeout=JOB_TIMEOUT):
        page.diff.pick(1, 2)
    assert page.diff.grid == variants_diff(
        core.rows[1].path, core.rows[2].path, s.model, core.rows[1].name, core.rows[2].name
    )
    dialog = EvalSettingsDialog(w.ctx, rec.settings, page)
    assert dialog.settings() == rec.settings  # the dialog shows the setting as it is
    shots = os.environ.get("LWQ_RESULTS_SHOTS")
    if shots:
        dialog.show()
        qtbot.waitExposed(dialog)
        dialog.grab().save(str(Path(shots) / "results-settings.png"))
        for name, tab in (("table", page.results), ("scatter", sc), ("bars", page.bars),
                          ("diff", page.diff)):  # fmt: skip
            page.tabs.setCurrentWidget(tab)
            qtbot.wait(100)
            w.grab().save(str(Path(shots) / f"results-{name}.png"))
    dialog.reject()

    # exports: the core's card, the figures as PNG
    job = page.export_card(tmp_path / "card.md")
    assert job is not None
    qtbot.waitUntil(lambda: job.done, timeout=JOB_TIMEOUT)
    assert (tmp_path / "card.md").read_text(encoding="utf-8") == render_card(core, s.model.name)
    written = page.export_figures(tmp_path)
    assert [p.name for p in written] == list(FIGURES)
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000

    # copying the selected rows gives the core's TSV and markdown
    page.results.select_row(1)
    assert page.results.copy(markdown=False) == table_text(core, [1])
    assert page.results.copy(markdown=True) == table_text(core, [1], markdown=True)

    # Speed benches the variant, F16 and the nearest stock mix; the nearest stock mixes below
    # and above are queued as Quantize & check (the queue's calls recorded, not run)
    page.results.select_row(2)
    assert page.variants.speed_paths() == [rec.custom.resolve(), core.rows[0].path,
                                           rec.q4_k_m.resolve()]  # fmt: skip
    queued: list[tuple[Any, Path, str | None]] = []
    monkeypatch.setattr(w.ctx.queue, "quantize_and_check", lambda *a: queued.append(a))
    page.variants.make_nearest_stock_mixes()
    qtbot.waitUntil(lambda: len(queued) == 2, timeout=JOB_TIMEOUT)
    below, above = nearest_stock_mixes(s.model, core.rows[2].file_bytes, s.state.imatrix)
    assert [(q[0], q[1].name, q[2]) for q in queued] == [
        (m.plan, stock_mix_output(rec.folder, s.model, m.name).name, m.name) for m in (below, above)
    ]
    page.variants.rename(rec.custom.resolve(), "squeezed")
    qtbot.waitUntil(lambda: page.table.rows[2].name == "squeezed", timeout=JOB_TIMEOUT)

    # another setting: the old records are flagged; a missing task file is offered, offline
    # it says it cannot be fetched
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = TaskSetting("mmlu", tmp_path / "no-mmlu.bin", 20)
    s.update(eval_settings=replace(rec.settings, n_chunks=3, tasks=(*rec.settings.tasks, missing)))
    qtbot.waitUntil(lambda: page.table.settings.n_chunks == 3, timeout=JOB_TIMEOUT)
    j = page.table.columns.index(page.table.column("kld"))
    assert model.data(model.index(1, j)).endswith(" †")
    assert model.data(model.index(1, j), Qt.ItemDataRole.BackgroundRole) is not None
    assert "2 chunks" in model.data(model.index(1, j), Qt.ItemDataRole.ToolTipRole)
    assert page.missing.isVisibleTo(page) and "no-mmlu.bin" in page.missing.text()
    assert "offline" in page.missing.text()
    if shots:
        page.tabs.setCurrentWidget(page.results)
        qtbot.wait(100)
        w.grab().save(str(Path(shots) / "results-flagged.png"))
    n = len(w.ctx.notifier.messages)
    page.fetch_missing()
    assert w.ctx.notifier.messages[n].level is Level.WARNING
    assert (
        "offline" in w.ctx.notifier.messages[n].text and "MMLU" in w.ctx.notifier.messages[n].text
    )

    # a GGUF of another model: refused with a message naming it, nothing changes
    before = s.state
    foreign = fixtures.synthetic("gqa4-untied")
    n = len(w.ctx.notifier.messages)
    page.variants.add_from_disk(foreign)
    qtbot.waitUntil(lambda: len(w.ctx.notifier.messages) > n, timeout=JOB_TIMEOUT)
    msg = w.ctx.notifier.messages[-1]
    assert msg.level is Level.ERROR and str(foreign) in msg.text
    assert "not a quantization of" in msg.text
    _idle(qtbot, w)
    assert s.state == before
    assert len(page.table.rows) == 4
