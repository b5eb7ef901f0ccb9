"""The Model step's Hub pane on the real window, against the loopback Hub.

Search → the table is the core's ``search_models`` answer for the same request, cell for
cell (sizes and fit marks formatted from the core's ``SearchHit``) → select a result → its
details are the core's ``repo_details`` (files, the ones a download takes, the card) →
Download a GGUF repo: progress, Cancel from the job panel (the child is killed; no file under
a final name), the partial download listed; Resume continues it with a ``Range`` request and
the model opens in its project → a gated repo without a token gets the core's one-line
message; logged in (the token checked and saved) it downloads → a search made offline says
why. The safetensors flow (download, verify, convert,
open) with the heartbeat is in ``test_hub_heartbeat.py``. ``LWQ_HUB_SHOTS=DIR`` saves
screenshots of the pane.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

import fixtures
from hub_server import HubServer
from lwq_app.core.hub.access import hub_access, token_path
from lwq_app.core.hub.search import repo_details, search_models
from lwq_app.core.hub.size_estimate import SEARCH_MIXES
from lwq_app.core.hub.transfer import pending_downloads
from lwq_app.core.jobs import Phase, format_size
from lwq_app.gui.context import Step
from lwq_app.gui.notifier import Level
from lwq_app.gui.views.hub_pane import HubPane
from lwq_app.gui.views.model_view import ModelView

JOB_TIMEOUT = 60_000
OPEN_TIMEOUT = 120_000
GIB = 1 << 30
SMOL_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
    "intermediate_size": 1536, "num_attention_heads": 9, "num_hidden_layers": 30,
    "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
}  # fmt: skip
CARD = "---\nlicense: apache-2.0\n---\n# Tiny\n\nA tiny test model.\n"


@pytest.fixture
def hub(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The loopback Hub (``hub_server``), and projects in this test's folder."""
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    return hub_server


@pytest.fixture
def window(hub: HubServer, window_factory: Callable[..., Any]) -> Any:
    return window_factory(quick=True)


def hub_pane(window: Any) -> HubPane:
    window.go_to(Step.MODEL)
    view = window.page(Step.MODEL)
    assert isinstance(view, ModelView)
    assert view.hub_button.isEnabled()
    view.hub_button.click()
    pane = view.hub_pane
    assert view.stack.currentWidget() is pane
    return pane


def _search(qtbot, pane: HubPane, query: str, gib: float = 0) -> None:
    pane.query.setText(query)
    pane.memory_spin.setValue(gib)
    with qtbot.waitSignal(pane.controller.searched, timeout=JOB_TIMEOUT):
        pane.search_button.click()


def _select(qtbot, pane: HubPane, repo: str) -> None:
    with qtbot.waitSignal(pane.controller.details_fetched, timeout=JOB_TIMEOUT):
        pane.select_repo(repo)


def _shot(qtbot, window: Any, name: str) -> None:
    """Save the window to ``$LWQ_HUB_SHOTS/name.png`` when that is set."""
    folder = os.environ.get("LWQ_HUB_SHOTS")
    if folder:
        window.resize(1440, 900)
        qtbot.wait(100)
        window.grab().save(str(Path(folder) / f"{name}.png"))


def _errors(window: Any) -> list[str]:
    return [m.text for m in window.ctx.notifier.messages if m.level is Level.ERROR]


def test_search_table_is_the_cores_hits(qtbot, hub: HubServer, window: Any) -> None:
    st_meta = {"pipeline_tag": "text-generation", "library_name": "transformers"}
    hub.add_model("HuggingFaceTB/SmolLM2-135M-Instruct", {"config.json": b"{}"}, card=CARD,
                  meta={**st_meta, "config": SMOL_CONFIG, "downloads": 900, "likes": 40,
                        "safetensors": {"parameters": {"BF16": 134_515_008}, "total": 134_515_008}})  # fmt: skip
    hub.add_model("big-org/Smol-70B", {"config.json": b"{}"},
                  meta={**st_meta, "downloads": 50, "likes": 300, "license": "llama3",
                        "safetensors": {"parameters": {"BF16": 70_000_000_000}, "total": 70_000_000_000}})  # fmt: skip
    hub.add_model("someone/smol-gguf", {"smol-f16.gguf": b"GGUF" + bytes(64)},
                  meta={"pipeline_tag": "text-generation", "downloads": 300, "likes": 2})  # fmt: skip
    hub.add_model("other/unrelated", {"config.json": b"{}"}, meta=st_meta)
    pane = hub_pane(window)
    _search(qtbot, pane, "smol", gib=2)
    core = search_models(pane.request())  # the core's answer to the same request
    model = pane.results_model
    assert [h.repo for h in core.hits] == [
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "someone/smol-gguf",
        "big-org/Smol-70B",
    ]  # by downloads, "other/unrelated" not matched
    assert model.hits == core.hits
    assert model.mixes == SEARCH_MIXES
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    assert headers[:2] == ["Repo", "Parameters"]  # then the sizes: what a result is chosen by
    assert headers[2 : 3 + len(SEARCH_MIXES)] == [f"{m} est." for m in ("F16", *SEARCH_MIXES)]

    def shown(row: int, title: str) -> str:
        return pane.proxy.index(row, headers.index(title)).data()

    def sized(n: int | None, fit: bool | None) -> str:
        text = "" if n is None else format_size(n, binary=True)
        return text if fit is None else f"{text} {'✓' if fit else '✗'}"

    for row, hit in enumerate(core.hits):
        assert shown(row, "Repo") == hit.repo
        assert shown(row, "Parameters") == ("" if hit.parameters is None else f"{hit.parameters:,}")
        assert shown(row, "Downloads") == f"{hit.downloads:,}"
        assert shown(row, "License") == (hit.license or "")
        assert shown(row, "F16 est.") == sized(hit.est_f16_bytes, hit.fits.get("F16"))
        for mix in SEARCH_MIXES:
            assert shown(row, f"{mix} est.") == sized(hit.est_sizes.get(mix), hit.fits.get(mix))
    smol, _gguf, big = core.hits
    assert smol.fits["Q4_K_M"] and not big.fits["Q2_K"]  # 2 GiB: the 135M fits, the 70B not
    assert shown(0, "Q4_K_M est.").endswith("✓") and shown(2, "Q2_K est.").endswith("✗")
    assert shown(2, "License") == "llama3"
    assert "estimates" in pane.status.text() and "2.00 GiB" in pane.status.text()
    _select(qtbot, pane, "HuggingFaceTB/SmolLM2-135M-Instruct")
    _shot(qtbot, window, "hub-search")

    # sorting is by the raw values: likes, most first
    pane.table.sortByColumn(headers.index("Likes"), Qt.SortOrder.DescendingOrder)
    assert shown(0, "Repo") == "big-org/Smol-70B"

    # the format filter and the author go to the core's request
    pane.format_combo.setCurrentText("Has GGUF")
    _search(qtbot, pane, "smol")
    assert [h.repo for h in model.hits] == ["someone/smol-gguf"]
    assert all(not h.fits for h in model.hits) and "✓" not in pane.status.text()
    assert not _errors(window)


def test_download_cancel_resume_then_open(qtbot, hub: HubServer, window: Any) -> None:
    gguf = fixtures.synthetic("gqa4-untied")
    data = gguf.read_bytes()
    repo, name = "lwq-test/tiny-gguf", "tiny-F16.gguf"
    commit = hub.add_model(repo, {name: data, "tiny.bin": b"x" * 1000}, card=CARD,
                           meta={"pipeline_tag": "text-generation"})  # fmt: skip
    hub.slow(repo, name, 2_000_000)  # ~5 s for the 10 MB: time to cancel midway
    pane = hub_pane(window)
    _search(qtbot, pane, "tiny")
    _select(qtbot, pane, repo)

    # the details: the core's files, the one GGUF picked, the card
    core = repo_details(repo, "main", hub_access())
    d = pane.details
    assert d.details == core
    shown = [d.files.item(i, 0).text() for i in range(d.files.rowCount())]
    assert shown == [f.name for f in core.files]
    assert d.picked_rows() == list(core.selection.files) == [name]
    sizes = {d.files.item(i, 0).text(): d.files.item(i, 1).text() for i in range(len(shown))}
    assert sizes[name] == format_size(len(data), binary=True)
    assert "A tiny test model." in d.card.toPlainText()
    assert d.download_button.isEnabled() and not d.type_combo.isEnabled()  # a GGUF: no convert

    # download; cancel it from the job panel midway
    d.download_button.click()
    job = pane.controller.job
    assert job is not None and job.title == f"Download {repo}"

    def midway() -> bool:
        p = job.progress
        return p is not None and p.phase is Phase.DOWNLOAD and 0.15 < p.fraction < 0.8

    qtbot.waitUntil(midway, timeout=JOB_TIMEOUT)
    assert pane.job_bar.isVisible() and "of 9.52 MiB" in pane.job_label.text()
    assert "/s" in pane.job_label.text() or "download" in pane.job_label.text()
    _shot(qtbot, window, "hub-download")
    cancels = [b for b in window.findChildren(QPushButton, "job_cancel") if b.isVisible()]
    assert len(cancels) == 1
    cancels[0].click()
    with qtbot.waitSignal(pane.controller.pending_changed, timeout=JOB_TIMEOUT):
        qtbot.waitUntil(lambda: job.done, timeout=JOB_TIMEOUT)
    assert not window.ctx.session.is_open and not _errors(window)
    snapshot = Path(os.environ["HF_HOME"]) / "hub" / "models--lwq-test--tiny-gguf" / "snapshots"
    assert not snapshot.exists() or not any(snapshot.rglob("*.gguf"))  # nothing under a final name
    assert list(Path(os.environ["HF_HOME"]).rglob("*.incomplete")) == []
    pending = pending_downloads()
    assert [p.repo for p in pending] == [repo] and pane.controller.pending == tuple(pending)
    have = pending[0].have_bytes
    assert 0 < have < len(data)
    assert pane.pending_box.isVisible() and pane.resume_button.isEnabled()
    assert pane.pending_list.item(0).text().startswith(f"{repo}: {format_size(have, binary=True)}")
    _shot(qtbot, window, "hub-pending")

    # Resume: a Range request from the bytes it has; then the model opens in its project
    hub.slow(repo, name, 0)
    with qtbot.waitSignal(window.ctx.session.opened, timeout=OPEN_TIMEOUT):
        pane.resume_button.click()
    gets = hub.downloads(repo, name)
    assert gets[-1].range == f"bytes={have}-", [g.range for g in gets]
    assert sum(g.body_bytes_sent for g in gets) < len(data) + 2_000_000  # not sent twice
    session = window.ctx.session
    assert session.source.path == snapshot / commit / name
    assert session.source.path.read_bytes() == data
    assert pending_downloads() == [] and not pane.pending_box.isVisible()
    view = window.page(Step.MODEL)
    assert view.stack.currentWidget() is view.local  # back on the model's page, open
    assert not _errors(window)


def test_gated_repo_and_offline_are_explained(
    qtbot, hub: HubServer, window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = "gated-org/locked"
    data = fixtures.synthetic("gqa4-untied").read_bytes()
    hub.add_model(repo, {"locked-F16.gguf": data}, gated=True,
                  meta={"pipeline_tag": "text-generation"})  # fmt: skip
    hub.add_token("hf_granted", "carol", "read")
    hub.gate(repo, {"hf_granted"})
    pane = hub_pane(window)
    _search(qtbot, pane, "locked")
    row = pane.results_model.hits.index(next(h for h in pane.results_model.hits if h.repo == repo))
    assert pane.proxy.index(row, pane.results_model.column_of("Gated")).data() == "gated"
    _select(qtbot, pane, repo)
    assert "gated" in pane.details.title.text()
    pane.details.download_button.click()
    qtbot.waitUntil(lambda: bool(_errors(window)), timeout=JOB_TIMEOUT)
    (text,) = _errors(window)
    assert repo in text and "gated" in text and "\n" not in text
    qtbot.waitUntil(lambda: pane.controller.job is None, timeout=JOB_TIMEOUT)
    assert not window.ctx.session.is_open and pane.details.download_button.isEnabled()

    # logged in with a token that was granted access: the download goes through
    with qtbot.waitSignal(pane.controller.logged_in, timeout=JOB_TIMEOUT):
        pane.controller.log_in("hf_granted")
    assert pane.status.text() == "Logged in as carol (read token)."
    assert token_path().read_text().strip() == "hf_granted"
    with qtbot.waitSignal(window.ctx.session.opened, timeout=OPEN_TIMEOUT):
        pane.details.download_button.click()
    assert window.ctx.session.source.path.read_bytes() == data
    assert len(_errors(window)) == 1

    # offline: the search says why, the notifier too (read when the job starts)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with qtbot.waitSignal(pane.controller.lookup_failed, timeout=JOB_TIMEOUT):
        pane.search_button.click()
    assert pane.status.text().startswith("The search failed: ")
    assert "HF_HUB_OFFLINE" in pane.status.text() and "HF_HUB_OFFLINE" in _errors(window)[-1]
