"""The Model and Target steps against the core: what the views show is what the core says.

The tensor table is the core's inventory, the summary is ``summarize``, and the bars of the
target chart are ``target_fit``'s rows for the same target. A quantized source is explained
while its F16 upcast runs; the target is kept in the project.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt

import fixtures
from lwq_app.core.evaluate import list_devices
from lwq_app.core.evaluate.targets import TargetFitRequest, target_fit
from lwq_app.core.jobs import format_size
from lwq_app.core.modelfile import open_model
from lwq_app.core.modelfile.summary import summarize
from lwq_app.gui.context import AppContext
from lwq_app.gui.views.model_view import ModelView
from lwq_app.gui.views.target_view import THIS_MACHINE, TargetView
from lwq_app.gui.views.tensor_table import Column

OPEN_TIMEOUT = 120_000  # ms: hashing, and an upcast for a quantized source
FIT_TIMEOUT = 60_000  # ms: a real llama.cpp context is made for the buffers


@pytest.fixture
def ctx(qapp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppContext]:
    """A fresh context over a project store of this test's own (so the upcast really runs)."""
    from lwq_app.gui.app import build_context

    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    c = build_context(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    yield c
    c.runner.cancel_all()
    c.runner.wait(10)
    c.session.close()


def open_in(qtbot, ctx: AppContext, path: Path) -> None:
    with qtbot.waitSignal(ctx.session.opened, timeout=OPEN_TIMEOUT):
        ctx.session.open(path)
    assert not [m for m in ctx.notifier.messages if m.level.value == "error"]


def column(view: ModelView, col: Column, role=Qt.ItemDataRole.UserRole) -> list:
    p = view.proxy
    return [p.data(p.index(r, col), role) for r in range(p.rowCount())]


# --- the Model step -------------------------------------------------------------------------


def test_table_and_summary_are_the_core_inventory(qtbot, ctx: AppContext) -> None:
    path = fixtures.smollm2_f16()
    view = ModelView(ctx)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.done_changed, timeout=OPEN_TIMEOUT) as done:
        open_in(qtbot, ctx, path)
    assert done.args == [True] and view.is_done()
    info = open_model(path)

    assert column(view, Column.NAME) == [t.name for t in info.tensors]
    shapes = column(view, Column.SHAPE, Qt.ItemDataRole.DisplayRole)
    assert shapes == [" × ".join(map(str, t.shape)) for t in info.tensors]
    assert column(view, Column.BYTES) == [t.n_bytes for t in info.tensors]
    assert column(view, Column.QUANTIZED) == [t.quantizable for t in info.tensors]

    view.table.sortByColumn(Column.BYTES, Qt.SortOrder.DescendingOrder)
    by_size = column(view, Column.BYTES)
    assert by_size == sorted((t.n_bytes for t in info.tensors), reverse=True)
    assert column(view, Column.NAME)[0] == "token_embd.weight"  # 54 MiB, not "9.00 KiB"

    view.filter_edit.setText("ffn_down")
    names = column(view, Column.NAME)
    assert names and len(names) == info.n_layer
    assert all("ffn_down" in n for n in names)
    view.filter_edit.clear()
    assert view.proxy.rowCount() == len(info.tensors)

    s = summarize(info)
    rows = view.summary_rows()
    assert rows["Architecture"] == s.architecture
    assert rows["Name"] == s.name
    assert rows["Parameters"] == f"{s.n_params:,}"
    assert rows["Layers"] == str(s.n_layer)
    assert rows["Attention heads"] == str(s.n_head)
    assert rows["KV heads"] == f"{s.n_head_kv} (GQA {s.n_gqa})"
    assert rows["Context length"] == f"{s.context_length:,}"
    assert rows["Vocabulary"] == f"{s.n_vocab:,}"
    assert rows["File type"] == s.file_type_name == "F16"
    assert rows["Experts"] == "none"
    assert rows["File size"] == format_size(s.file_size, binary=True)
    assert rows["Embeddings"].startswith("tied") and s.tied_embeddings
    assert "Project base" not in rows and not view.banner.isVisible()
    mix = [view.mix_table.item(i, 0).text() for i in range(view.mix_table.rowCount())]
    assert mix == [m.type for m in s.type_mix]
    assert view.hub_button.isEnabled() and "Hub" in view.hub_button.toolTip()
    assert view.filter_edit.placeholderText()


def test_quantized_source_is_explained_while_it_is_upcast(qtbot, ctx: AppContext) -> None:
    path = fixtures.smollm2_q4_1()
    view = ModelView(ctx)
    qtbot.addWidget(view)
    view.show()
    with qtbot.waitSignal(ctx.session.opened, timeout=OPEN_TIMEOUT):
        ctx.session.open(path)
        qtbot.waitUntil(view.banner.isVisible, timeout=30_000)
        job = ctx.session.open_job
        assert job is not None and not job.done  # shown while the upcast runs
        assert view.progress.isVisible()
        s = summarize(open_model(path))
        assert s.explanation and s.explanation in view.banner.text()
        assert view.summary_rows()["File type"] == "Q4_1"
    assert view.progress.isHidden()

    rows = view.summary_rows()
    source, base = ctx.session.source, ctx.session.model
    assert source is not None and base is not None
    assert rows["File type"] == summarize(source).file_type_name == "Q4_1"
    assert summarize(base).file_type_name == "F16" and summarize(base).is_float
    assert ctx.session.result is not None and ctx.session.result.upcast
    assert "F16 upcast" in rows["Project base"] and str(base.path) in rows["Project base"]
    assert view.banner.isVisible() and s.explanation in view.banner.text()
    assert column(view, Column.NAME) == [t.name for t in source.tensors]
    view.grab().save(str(Path(os.environ["LWQ_DATA_DIR"]) / "model.png"))


def test_split_model_is_one_model(qtbot, ctx: AppContext, tmp_path: Path) -> None:
    first = fixtures.make_synthetic("gqa4-untied", tmp_path / "split.gguf", split_max_tensors=20)
    info = open_model(first)
    assert len(info.paths) > 1
    view = ModelView(ctx)
    qtbot.addWidget(view)
    open_in(qtbot, ctx, first)
    assert column(view, Column.NAME) == [t.name for t in info.tensors]
    assert column(view, Column.BYTES) == [t.n_bytes for t in info.tensors]
    s = summarize(info)
    assert view.summary_rows()["File size"].startswith(f"{s.n_files} files, ")
    assert view.summary_rows()["KV heads"] == "2 (GQA 4)"


# --- the Target step ------------------------------------------------------------------------


def core_fit(view: TargetView):
    spec = view.shown_target
    assert spec is not None and view.last_fit is not None
    model = view._ctx.session.model.path
    return spec, target_fit(TargetFitRequest(model, spec, devices=view._devices))


def drawn_as_core(view: TargetView) -> None:
    """The bars drawn are the core's rows for the same target."""
    spec, fit = core_fit(view)
    assert fit == view.last_fit
    kind = spec.memory_kind
    want = {}
    for r in fit.rows:
        dev = (r.weights_device, r.kv_device, r.compute_device)
        host = (r.weights_host, r.kv_host, r.compute_host)
        want[r.label] = {"cpu": host, "unified": dev, "discrete": dev + host}[kind]
    assert view.bar_values() == want
    labels = [r.label for r in fit.rows]
    assert labels[0] == "F16" and "Q4_K_M" in labels and len(labels) == 28


def test_target_fit_is_drawn_from_the_core_and_saved(qtbot, ctx: AppContext) -> None:
    path = fixtures.smollm2_f16()
    open_in(qtbot, ctx, path)
    view = TargetView(ctx)
    qtbot.addWidget(view)
    assert not view.is_done()
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.show()  # the devices are listed on first show, then this machine is fitted
    assert view.profile_combo.itemText(0) == THIS_MACHINE
    assert view.shown_target.profile == THIS_MACHINE
    assert view.last_fit.measured and "measured on this machine" in view.fit_label.text().lower()
    devices = list_devices()
    assert devices[0].description in view.devices_label.text()
    drawn_as_core(view)
    assert view.is_done()

    # a CPU profile: F16's weights are the model's tensor bytes, all in RAM
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.select_profile("8 GB laptop CPU")
    drawn_as_core(view)
    model = open_model(path)
    assert view.bar_values()["F16"][0] == model.tensor_data_bytes
    assert not view.chart.host.isVisible()

    # another backend is an estimate; partial offload shows the GPU's memory and the RAM
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.select_profile("24 GB RTX")
        view.set_gpu_layers(10)
    assert not view.last_fit.measured
    assert "estimate for cuda" in view.fit_label.text().lower()
    assert view.shown_target.gpu_layers == 10
    assert view.chart.host.isVisible()
    drawn_as_core(view)
    f16 = view.last_fit.rows[0]
    assert f16.weights_device + f16.weights_host > model.tensor_data_bytes  # tied output copy

    # changes within the debounce start one fit, not one per change
    calls = len(ctx.runner.calls)
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.set_context(2048)
        view.set_context(1024)
        view.set_context(512)
    fits = [t for t, _ in ctx.runner.calls[calls:] if t == "Fit the target"]
    assert len(fits) == 1 and view.shown_target.context == 512
    drawn_as_core(view)

    # a budget below the weights: that mix is marked as not fitting
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.select_profile("8 GB laptop CPU")
        view.budget_spin.setValue(0.3)  # F16 needs 0.36 GiB at 512 tokens
    misses = [r.label for r in view.last_fit.rows if not r.fits]
    assert "F16" in misses and "Q4_K_M" not in misses
    assert "does not fit: F16" in view.note_label.text()
    drawn_as_core(view)
    view.grab().save(str(Path(os.environ["LWQ_DATA_DIR"]) / "target.png"))

    # the target is the project's: saved, and back after reopening
    spec = view.shown_target
    assert ctx.session.state.target == spec
    ctx.session.close()
    assert not view.is_done()
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        open_in(qtbot, ctx, path)
    assert ctx.session.state.target == spec
    assert view.profile_combo.currentText() == "8 GB laptop CPU"
    assert view.budget_spin.value() == pytest.approx(0.3)
    assert view.shown_target == spec


def test_save_as_profile_writes_the_users_file(
    qtbot, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lwq_app.core.evaluate.targets import load_profiles
    from lwq_app.gui.views import profile_editor

    open_in(qtbot, ctx, fixtures.smollm2_f16())
    view = TargetView(ctx)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.show()
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.select_profile("24 GB RTX")
        view.budget_spin.setValue(12)
    monkeypatch.setattr(
        profile_editor.QInputDialog, "getText", staticmethod(lambda *a, **k: ("12 GB card", True))
    )
    with qtbot.waitSignal(view.fit_shown, timeout=FIT_TIMEOUT):
        view.save_as_profile()
    saved = {p.name: p for p in load_profiles()}["12 GB card"]
    assert (saved.backend, saved.device_memory, saved.builtin) == ("CUDA", 12 << 30, False)
    assert view.profile_combo.currentText() == "12 GB card"
    assert view.shown_target.profile == "12 GB card"


def test_edit_profiles_writes_the_users_file(qtbot, ctx: AppContext) -> None:
    from lwq_app.core.evaluate.targets import load_profiles
    from lwq_app.gui.views.profile_editor import ProfileEditorDialog

    dialog = ProfileEditorDialog([], ctx.notifier, None)
    qtbot.addWidget(dialog)
    dialog._add_row(None)
    dialog.table.item(0, 0).setText("My laptop")
    dialog.table.cellWidget(0, 3).setValue(16)
    dialog._save()
    assert dialog.result() == dialog.DialogCode.Accepted
    mine = {p.name: p for p in load_profiles()}["My laptop"]
    assert (mine.backend, mine.host_memory, mine.builtin) == ("CPU", 16 << 30, False)

    bad = ProfileEditorDialog([mine], ctx.notifier, None)  # RAM 0: the core refuses it
    qtbot.addWidget(bad)
    bad.table.cellWidget(0, 3).setValue(0)
    bad._save()
    assert bad.result() != bad.DialogCode.Accepted
    assert "host_memory" in ctx.notifier.messages[-1].text
    assert {p.name: p for p in load_profiles()}["My laptop"] == mine


def test_the_window_shows_both_steps(qtbot, app_window) -> None:
    from lwq_app.gui.context import Step

    window = app_window
    model_page, target_page = window.page(Step.MODEL), window.page(Step.TARGET)
    assert isinstance(model_page, ModelView) and isinstance(target_page, TargetView)
    with qtbot.waitSignal(window.ctx.session.opened, timeout=OPEN_TIMEOUT):
        window.ctx.session.open(fixtures.smollm2_f16())
    assert model_page.is_done() and model_page.table_model.rowCount() == 272
    with qtbot.waitSignal(target_page.fit_shown, timeout=FIT_TIMEOUT):
        window.go_to(Step.TARGET)
    assert target_page.is_done() and target_page.last_fit is not None
