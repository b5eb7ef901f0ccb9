"""The Importance step against the core: the heatmap draws exactly the core's matrix.

The real window (quick profile) opens SmolLM2, collects 2 chunks, and the heatmap's axes,
array, hover text, missing cells, log scale and CSV are compared with ``heatmap_for`` and
``heatmap_csv`` of the same imatrix; the GUI thread never stalls while the imatrix runs and
no core job runs on it. A cancelled collection leaves no file, an interrupted one resumes
from its checkpoint; bad imatrix files (not one, or another model's) are refused with a
message and change nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from heartbeat import Heartbeat
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QImage

import fixtures
from lwq_app.core.importance import (
    ImatrixRequest,
    SensitivityRequest,
    StatisticsRequest,
    collect_imatrix,
    heatmap_csv,
    heatmap_for,
    imatrix_statistics,
    measure_sensitivity,
)
from lwq_app.core.importance.collection import RESUME_SUFFIX
from lwq_app.core.jobs import Phase
from lwq_app.core.jobs.resources import CALIBRATION_TEXT
from lwq_app.core.modelfile import open_model
from lwq_app.core.modelfile.imatrix_file import read_imatrix
from lwq_app.core.results.workspace import IMATRIX_FILE
from lwq_app.gui.context import AppContext, Step
from lwq_app.gui.views.heatmap_view import HeatmapView
from lwq_app.gui.views.imatrix_panel import SAVE_EVERY
from lwq_app.gui.views.importance_view import QUICK_ROWS, ImportanceView

OPEN_TIMEOUT = 120_000  # ms: hashing the model
COLLECT_TIMEOUT = 180_000  # ms: two 512-token chunks of SmolLM2 on a busy CPU
SENSITIVITY_TIMEOUT = 300_000  # ms: every candidate type, 32 rows per tensor
MAX_GAP_MS = 500


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, window_factory: Callable[..., Any]):
    """The real window, quick profile, over a project store of this test's own."""
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    return window_factory(quick=True)


@pytest.fixture
def page(qtbot, qapp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImportanceView]:
    """The Importance page alone, over a fresh context and project store."""
    from lwq_app.gui.app import build_context

    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    ctx = build_context(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), quick=True)
    view = ImportanceView(ctx)
    qtbot.addWidget(view)
    view.resize(1200, 760)
    view.show()
    qtbot.waitExposed(view)
    yield view
    ctx.runner.cancel_all()
    ctx.runner.wait(10)
    ctx.session.close()


def open_in(qtbot, ctx: AppContext, path: Path) -> None:
    with qtbot.waitSignal(ctx.session.opened, timeout=OPEN_TIMEOUT):
        ctx.session.open(path)
    assert not errors(ctx)


def errors(ctx: AppContext) -> list[str]:
    return [m.text for m in ctx.notifier.messages if m.level.value == "error"]


def hover(qtbot, view: HeatmapView, i: int, j: int) -> str:
    """Move the mouse for real to the centre of cell (i, j); the text the view reported.
    (pyqtgraph drops a mouse move that comes within 10 ms of the one before it.)"""
    qtbot.wait(50)  # pending resizes and relayouts first
    pos = view.glw.mapFromScene(view.scene_pos_of_cell(i, j))
    qtbot.mouseMove(view.glw.viewport(), QPoint(2, 2))
    qtbot.wait(30)
    with qtbot.waitSignal(view.cell_hovered, timeout=5_000) as blocker:
        qtbot.mouseMove(view.glw.viewport(), pos)
    return str(blocker.args[0])


def alpha(item: Any, i: int, j: int) -> int:
    """The alpha of cell (i, j) in the image the item draws."""
    item.render()
    return QImage(item.qimage).pixelColor(j, i).alpha()


def log10_where_positive(v: np.ndarray) -> np.ndarray:
    return np.log10(v, where=v > 0, out=np.full(v.shape, np.nan))


def test_heatmap_is_the_cores(qtbot, window, tmp_path: Path) -> None:
    ctx: AppContext = window.ctx
    page: ImportanceView = window.page(Step.IMPORTANCE)
    window.go_to(Step.IMPORTANCE)
    model_path = fixtures.smollm2_f16()
    open_in(qtbot, ctx, model_path)
    assert not page.is_done() and page.panel.chunks.value() == 2

    with Heartbeat() as hb, qtbot.waitSignal(page.heatmap_shown, timeout=COLLECT_TIMEOUT):
        job = page.collect()
        assert job is not None and job.title == "Collect importance"
    assert not errors(ctx)
    assert hb.max_gap_ms < MAX_GAP_MS, hb.summary()
    main = threading.main_thread().name
    assert ctx.runner.calls and all(thread != main for _, thread in ctx.runner.calls)
    state = ctx.session.state
    assert page.is_done() and state.imatrix == ctx.session.folder / IMATRIX_FILE
    assert state.imatrix_dataset == CALIBRATION_TEXT.name

    model = open_model(model_path)
    stats = imatrix_statistics(StatisticsRequest(state.imatrix))
    hm = heatmap_for(stats, "sum_act2", model)
    view = page.heatmap
    window.go_to(Step.IMPORTANCE)  # opening shows the Model step
    qtbot.waitUntil(view.glw.viewport().isVisible)
    layers, kinds = view.axis_labels()
    assert layers == [str(x) for x in hm.layers] and kinds == list(hm.kinds)
    # log scale (the default): log10 of the core's values where positive
    assert page.log_box.isChecked() and view.log_scale()
    np.testing.assert_array_equal(view.displayed_array(), log10_where_positive(hm.values))
    page.log_box.setChecked(False)
    np.testing.assert_array_equal(view.displayed_array(), hm.values)

    # hover the centre of (layer 7, ffn_down): its tensor and the core's exact value
    i, j = hm.layers.index(7), hm.kinds.index("ffn_down")
    text = hover(qtbot, view, i, j)
    assert "blk.7.ffn_down.weight" in text and repr(hm.cell(7, "ffn_down")) in text
    assert view.grid.image.toolTip() == text == view.cell_text(i, j)
    with qtbot.waitSignal(view.cell_clicked, timeout=5_000) as clicked:
        qtbot.mouseClick(
            view.glw.viewport(),
            Qt.MouseButton.LeftButton,
            pos=view.glw.mapFromScene(view.scene_pos_of_cell(i, j)),
        )
    assert clicked.args == ["blk.7.ffn_down.weight"]
    details = page.details.rows()
    assert details["tensor"] == "blk.7.ffn_down.weight" and details["type"] == "F16"
    assert details["Σact²"] == f"{hm.cell(7, 'ffn_down'):.7g}"
    assert "blk.7.ffn_down.weight" in page.details_text()

    # token_embd (outside the layers) has no imatrix entry: transparent, said missing
    k = hm.extra_names.index("token_embd.weight")
    assert "token_embd.weight" not in hm.extra
    assert alpha(view.strip_grid.image, 0, k) == 0
    assert "missing" in view.strip_text(0, k)
    assert alpha(view.grid.image, i, j) == 255

    # cells ≤ 0 on a log scale: no logarithm, grey under a cross, and said so
    page.log_box.setChecked(True)
    page.set_statistic("cossim")
    cos = heatmap_for(stats, "cossim", model)
    np.testing.assert_array_equal(view.displayed_array(), log10_where_positive(cos.values))
    nonpositive = np.argwhere(cos.present & (cos.values <= 0))
    assert len(nonpositive)  # layer 0 has no layer before it
    a, b = nonpositive[0]
    assert alpha(view.grid.image, a, b) == 0 and alpha(view.grid.overlay, a, b) == 255
    assert "≤ 0" in view.cell_text(a, b)
    page.log_box.setChecked(False)
    np.testing.assert_array_equal(view.displayed_array(), cos.values)

    # exports
    csv, png = tmp_path / "cossim.csv", tmp_path / "cossim.png"
    view.export_csv(csv)
    assert csv.read_text(encoding="utf-8") == heatmap_csv(cos)
    view.export_png(png)
    assert QImage(str(png)).width() == 1440

    # sensitivity (row-sampled), measured once; Q4_K cannot take SmolLM2's 576-wide rows,
    # so most of its cells are missing: transparent and said missing, never zero
    with qtbot.waitSignal(page.heatmap_shown, timeout=SENSITIVITY_TIMEOUT):
        assert page.measure_sensitivity() is not None
    assert not errors(ctx) and view.label() == "sensitivity (Q4_0)"
    sens = measure_sensitivity(SensitivityRequest(model_path, state.imatrix, max_rows=QUICK_ROWS))
    np.testing.assert_array_equal(
        view.displayed_array(), heatmap_for(sens, page.sensitivity_statistic(), model).values
    )
    with qtbot.waitSignal(page.heatmap_shown, timeout=1_000):
        page.set_statistic("sensitivity:Q4_K")
    shm = heatmap_for(sens, "sensitivity:Q4_K", model)
    np.testing.assert_array_equal(view.displayed_array(), shm.values)
    a, b = np.argwhere(~shm.present)[0]
    assert alpha(view.grid.image, a, b) == 0
    assert "missing" in view.cell_text(a, b)
    assert shm.tensor_name(shm.layers[a], shm.kinds[b]) in view.cell_text(a, b)

    # close and reopen: the project's imatrix is shown again
    page.set_statistic("sum_act2")
    ctx.session.close()
    assert not page.is_done() and view.hm is None
    with qtbot.waitSignal(page.heatmap_shown, timeout=OPEN_TIMEOUT):
        ctx.session.open(model_path)
    assert page.is_done()
    np.testing.assert_array_equal(view.displayed_array(), hm.values)


def test_cancel_leaves_no_file(qtbot, page: ImportanceView) -> None:
    ctx = page._ctx
    open_in(qtbot, ctx, fixtures.smollm2_f16())
    folder = ctx.session.folder
    before = sorted(p.name for p in folder.iterdir())
    job = page.collect(chunks=-1)  # the whole text: minutes
    assert job is not None and not page.panel.collect_button.isEnabled()
    qtbot.waitUntil(
        lambda: job.progress is not None and job.progress.phase == Phase.COLLECT,
        timeout=COLLECT_TIMEOUT,
    )
    with Heartbeat() as hb:
        ctx.runner.cancel(job)
        qtbot.waitUntil(lambda: job.done, timeout=15_000)
    assert hb.max_gap_ms < MAX_GAP_MS, hb.summary()
    assert sorted(p.name for p in folder.iterdir()) == before
    assert ctx.session.state.imatrix is None and not page.is_done()
    assert not errors(ctx)
    assert page.panel.collect_button.isEnabled() and page.panel.load_button.isEnabled()
    assert not page.panel.resume_button.isEnabled()


def test_bad_imatrix_changes_nothing(qtbot, page: ImportanceView, tmp_path: Path) -> None:
    ctx = page._ctx
    model = fixtures.smollm2_f16()
    open_in(qtbot, ctx, model)
    other = tmp_path / "qkv.imatrix.gguf"
    collect_imatrix(
        ImatrixRequest(fixtures.tokenized("qkv"), CALIBRATION_TEXT, other, ctx=128, chunks=2)
    )
    junk = tmp_path / "notes.dat"
    junk.write_text("not an imatrix\n")
    for bad in (junk, model, other):
        state = ctx.session.state
        n = len(ctx.notifier.messages)
        job = page.load_imatrix(bad)
        qtbot.waitUntil(lambda j=job: j.done, timeout=30_000)
        said = [m.text for m in ctx.notifier.messages[n:] if m.level.value == "error"]
        assert len(said) == 1 and bad.name in said[0], said
        assert ctx.session.state == state and state.imatrix is None and not page.is_done()
        assert not (ctx.session.folder / IMATRIX_FILE).exists()
        assert page.panel.load_button.isEnabled()


def test_resume_continues_an_interrupted_collection(qtbot, page: ImportanceView) -> None:
    ctx = page._ctx
    open_in(qtbot, ctx, fixtures.smollm2_f16())
    out = ctx.session.folder / IMATRIX_FILE
    checkpoint = Path(f"{out}{RESUME_SUFFIX}")
    assert not page.panel.resume_button.isEnabled()
    chunks = SAVE_EVERY + 1
    job = page.collect(chunks)
    qtbot.waitUntil(checkpoint.is_file, timeout=COLLECT_TIMEOUT)
    ctx.runner.cancel(job)
    qtbot.waitUntil(lambda: job.done, timeout=15_000)
    assert not out.exists() and page.panel.resume_button.isEnabled()

    with qtbot.waitSignal(page.heatmap_shown, timeout=COLLECT_TIMEOUT):
        page.collect(chunks, resume=True)
    assert not errors(ctx)
    assert read_imatrix(out).chunk_count == chunks and not checkpoint.exists()
    assert ctx.session.state.imatrix == out and not page.panel.resume_button.isEnabled()
