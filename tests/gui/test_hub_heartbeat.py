"""Hub → project on the real window: download, verify, convert and open a safetensors repo,
with the GUI thread's heartbeat measured through every phase.

The loopback Hub serves SmolLM2 as a transformers folder (F16 safetensors, config, tokenizer:
``hub_fixtures.smollm2_safetensors``), from a process of its own: the test server is plain
Python, and in this process its copies of a 270 MB body would hold the GIL and stall the GUI
thread for it (the real Hub is not in the app's process either). From the Hub pane: search, select, Download and open →
the download (``Phase.DOWNLOAD``), the sha256 check (``Phase.VERIFY``), llama.cpp's converter
(``Phase.CONVERT``) and the open job run while a 10 ms timer on the GUI thread never waits
more than 500 ms → the converted GGUF opens in its project, with SmolLM2's tensors → the
same again as BF16 comes from the cache, and its conversion cancelled midway leaves no file →
the local folder converted (Open Safetensors Folder) opens in the same project (the same
weights: the project's hash says so).
``benchmarks/gui_heartbeat.py --only-hub`` prints the same measurement; ``LWQ_HUB_SHOTS=DIR``
saves screenshots of the pane.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from heartbeat import PhaseHeartbeat
from hub_fixtures import folder_files, hub_in_child, smollm2_safetensors

import fixtures
from hub_server import HubServer
from lwq_app.core.jobs import Phase, data_dir
from lwq_app.core.modelfile import open_model
from lwq_app.gui.context import Step
from lwq_app.gui.hub_controller import converted_path, folder_output
from lwq_app.gui.notifier import Level

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
FLOW_TIMEOUT = 240_000  # ms: 270 MB over loopback, its sha256, the conversion, the hash
JOB_TIMEOUT = 60_000
MAX_GAP_MS = 500


@pytest.fixture
def hub_url(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A loopback Hub in a child process serving SmolLM2's safetensors, with ``hub_server``'s
    environment (HF_HOME and lwq's cache in tmp_path, Xet off) pointed at it; projects in
    this test's folder."""
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    meta = {"pipeline_tag": "text-generation", "license": "apache-2.0"}
    with hub_in_child({REPO: (smollm2_safetensors(), meta)}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        yield url


@pytest.mark.slow
def test_download_verify_convert_open_keep_the_window_responsive(
    qtbot, hub_url: str, window_factory: Callable[..., Any]
) -> None:
    folder = smollm2_safetensors()
    w = window_factory(quick=True)
    w.go_to(Step.MODEL)
    view = w.page(Step.MODEL)
    view.hub_button.click()
    pane = view.hub_pane
    pane.query.setText("SmolLM2")
    with qtbot.waitSignal(pane.controller.searched, timeout=60_000):
        pane.search_button.click()
    with qtbot.waitSignal(pane.controller.details_fetched, timeout=60_000):
        pane.select_repo(REPO)
    assert sorted(pane.details.picked_rows()) == sorted(folder_files(folder))
    assert pane.details.type_combo.isEnabled()
    pane.details.type_combo.setCurrentText("F16")
    if shots := os.environ.get("LWQ_HUB_SHOTS"):
        w.resize(1440, 900)
        qtbot.wait(100)
        w.grab().save(str(Path(shots) / "hub-details-safetensors.png"))

    ctx = w.ctx

    def errors() -> list[str]:
        return [m.text for m in ctx.notifier.messages if m.level is Level.ERROR]

    with PhaseHeartbeat(ctx.runner) as hb:
        pane.details.download_button.click()
        qtbot.waitUntil(lambda: ctx.session.is_open or bool(errors()), timeout=FLOW_TIMEOUT)
    print(f"\nheartbeat: {hb.summary()}")
    assert not errors(), errors()
    for phase in ("download", "verify", "convert"):
        assert hb.ticks(phase) > 0, (phase, hb.summary())
        assert hb.max_gap_ms(phase) <= MAX_GAP_MS, hb.summary()
    assert hb.max_gap_ms() <= MAX_GAP_MS, hb.summary()

    # the converted GGUF is the project's base: SmolLM2's tensors, in lwq's data folder
    download = pane.controller.last_download
    assert download is not None and download.kind == "safetensors"
    assert download.path.name == download.commit and len(download.commit) == 40  # the snapshot
    out = converted_path(download, "F16")
    assert pane.controller.last_convert.output == out and out.is_relative_to(data_dir())
    session = ctx.session
    assert session.model.path == out and session.is_open
    got = open_model(out)
    want = open_model(fixtures.smollm2_f16())
    assert [t.name for t in got.tensors] == [t.name for t in want.tensors]
    assert got.architecture == "llama" and got.file_type == 1  # MOSTLY_F16
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left beside it
    assert view.stack.currentWidget() is view.local
    assert view.summary_rows()["Architecture"] == "llama"

    # again as BF16: the files come from the cache; the conversion cancelled midway leaves no
    # file, and the project that is open stays open; "then delete the safetensors" deletes
    # nothing when the conversion did not finish
    view.show_hub()
    pane.details.type_combo.setCurrentText("BF16")
    assert pane.details.delete_source.isEnabled()
    pane.details.delete_source.setChecked(True)
    pane.details.download_button.click()

    def converting() -> bool:
        j = pane.controller.job
        p = j.progress if j is not None else None
        return p is not None and p.phase is Phase.CONVERT and p.done > 0

    qtbot.waitUntil(converting, timeout=FLOW_TIMEOUT)
    job = pane.controller.job
    assert pane.controller.last_download.downloaded_bytes == 0  # nothing fetched again
    if shots:
        w.grab().save(str(Path(shots) / "hub-convert.png"))
    assert pane.cancel_button.isVisible()
    pane.cancel_button.click()
    qtbot.waitUntil(lambda: job.done and pane.controller.job is None, timeout=JOB_TIMEOUT)
    assert job.cancelled and not errors(), errors()
    assert not converted_path(download, "BF16").exists()
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    assert (download.path / "model.safetensors").is_file()  # kept: nothing was converted
    assert session.model.path == out

    # a local safetensors folder (File → Open Safetensors Folder): converted, then opened in
    # the same project (the same weights)
    project = session.folder
    pane.details.type_combo.setCurrentText("F16")
    with qtbot.waitSignal(session.opened, timeout=FLOW_TIMEOUT):
        pane.convert_folder(folder)
    local = folder_output(folder, "F16")
    assert pane.controller.last_convert.output == local and session.source.path == local
    assert session.folder == project and session.model.path == out  # same weights: same project
    assert not errors(), errors()
