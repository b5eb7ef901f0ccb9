"""Results → Publish on the real window, against the loopback Hub.

A project of SmolLM2 with one variant (the stock Q8_0, really quantized) → Publish… opens
the dialog with the project's variants → a read token is told it cannot publish, an unknown
one is refused through the notifier, a write token is checked (whoami) and saved (0600) →
the card preview is exactly the core's ``preview_card`` for the dialog's request → an upload
cancelled midway leaves the remote ``main`` as it was → the edited card and the GGUF are
published in one commit, checked on the server side. ``LWQ_HUB_SHOTS=DIR`` saves
screenshots of the dialog.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fixtures
from hub_server import HubServer
from lwq_app.core.hub.access import token_path
from lwq_app.core.hub.publish import preview_card
from lwq_app.core.jobs import Phase
from lwq_app.core.modelfile import open_model
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.plan.quantize import QuantizeRequest, quantize
from lwq_app.gui.context import Step
from lwq_app.gui.notifier import Level
from lwq_app.gui.views.publish_dialog import PublishDialog
from lwq_app.gui.views.results_view import ResultsView

JOB_TIMEOUT = 60_000
BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REPO = "alice/SmolLM2-135M-lwq-GGUF"


@pytest.fixture(scope="module")
def q8_variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = fixtures.smollm2_f16()
    out = tmp_path_factory.mktemp("variants") / "smollm2-Q8_0.gguf"
    quantize(QuantizeRequest(base, plan_from_preset(open_model(base), "Q8_0"), out))
    return out


@pytest.fixture
def hub(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The loopback Hub (``hub_server``), and projects in this test's folder."""
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    return hub_server


def _idle(qtbot, w: Any) -> None:
    qtbot.waitUntil(lambda: not w.ctx.runner.running, timeout=JOB_TIMEOUT)


def _check(qtbot, dlg: PublishDialog, token: str, *, save: bool = False) -> None:
    dlg.token_info = None
    dlg.token.setText(token)
    dlg.save_box.setChecked(save)
    dlg.check_button.click()
    qtbot.waitUntil(lambda: dlg.token_info is not None or "Refused" in dlg.who.text(),
                    timeout=JOB_TIMEOUT)  # fmt: skip


@pytest.mark.slow
def test_publish_from_the_results_page(
    qtbot, hub: HubServer, window_factory: Callable[..., Any], q8_variant: Path
) -> None:
    hub.add_token("hf_alice_write", "alice", "write")
    hub.add_token("hf_bob_read", "bob", "read")
    w = window_factory(quick=True)
    with qtbot.waitSignal(w.ctx.session.opened, timeout=120_000):
        w.open_path(fixtures.smollm2_f16())
    w.go_to(Step.RESULTS)
    page = w.page(Step.RESULTS)
    assert isinstance(page, ResultsView)
    assert not page.publish_button.isEnabled()  # no variant yet
    page.variants.add_from_disk(q8_variant)
    qtbot.waitUntil(lambda: page.table is not None and len(page.table.rows) == 2,
                    timeout=JOB_TIMEOUT)  # fmt: skip
    _idle(qtbot, w)
    assert page.publish_button.isEnabled()
    page.publish_button.click()
    dlg = page.publish_dialog
    assert isinstance(dlg, PublishDialog) and dlg.isVisible()
    assert dlg.chosen() == (q8_variant.resolve(),)
    assert not dlg.publish_button.isEnabled()  # no repo yet

    # tokens: a read one cannot publish; an unknown one is refused (the notifier says why)
    _check(qtbot, dlg, "hf_bob_read")
    assert dlg.token_info.user == "bob" and not dlg.token_info.can_write
    assert "read only" in dlg.who.text()
    _check(qtbot, dlg, "hf_nobody")
    assert dlg.token_info is None and "Refused" in dlg.who.text()
    errors = [m for m in w.ctx.notifier.messages if m.level is Level.ERROR]
    assert errors and errors[-1].title == "Check the Hub token" and "401" in errors[-1].text
    dlg.repo.clear()
    _check(qtbot, dlg, "hf_alice_write", save=True)
    info = dlg.token_info
    assert info is not None and info.user == "alice" and info.can_write
    assert "alice (write token, may write)" in dlg.who.text()
    assert token_path().read_text().strip() == "hf_alice_write"
    assert stat.S_IMODE(token_path().stat().st_mode) == 0o600
    assert dlg.repo.text().startswith("alice/") and dlg.repo.text().endswith("-GGUF")
    dlg.repo.setText(REPO)
    dlg.base_model.setText(BASE_MODEL)

    # the card preview is the core's
    dlg.preview_button.click()
    qtbot.waitUntil(lambda: bool(dlg.card.toPlainText()), timeout=JOB_TIMEOUT)
    want = preview_card(dlg.request(with_card=False))
    assert dlg.card.toPlainText() == want
    assert f"base_model: {BASE_MODEL}" in want and "base_model_relation: quantized" in want
    assert q8_variant.name in want
    if folder := os.environ.get("LWQ_HUB_SHOTS"):
        w.resize(1440, 900)
        qtbot.wait(100)
        w.grab().save(str(Path(folder) / "publish-results.png"))
        dlg.grab().save(str(Path(folder) / "publish-dialog.png"))

    # an upload cancelled midway: the remote main is as it was
    dlg.publish_button.click()
    job = dlg.job
    assert job is not None and not dlg.publish_button.isEnabled() and dlg.cancel_button.isVisible()
    qtbot.waitUntil(lambda: job.progress is not None and job.progress.phase
                    in (Phase.HASH, Phase.UPLOAD), timeout=JOB_TIMEOUT)  # fmt: skip
    dlg.cancel_button.click()
    qtbot.waitUntil(lambda: job.done, timeout=JOB_TIMEOUT)
    assert job.cancelled and "Cancelled" in dlg.status.text()
    if REPO in hub.repos:  # created before the cancel: only its initial commit
        assert len(hub.commits(REPO)) == 1
        assert set(hub.repo_files(REPO)) <= {".gitattributes"}

    # the edited card and the GGUF, in one commit
    dlg.card.appendPlainText("Edited in the app.")
    card = dlg.card.toPlainText()
    with qtbot.waitSignal(dlg.published, timeout=JOB_TIMEOUT) as done:
        dlg.publish_button.click()
    result = done.args[0]
    files = hub.repo_files(REPO)
    assert files["README.md"].decode() == card
    assert files[q8_variant.name] == q8_variant.read_bytes()
    assert result.commit == hub.commits(REPO)[-1] and len(hub.commits(REPO)) == 2
    assert result.url in dlg.status.text() and dlg.publish_button.isEnabled()
    assert not [m for m in w.ctx.notifier.messages[len(errors) :] if m.level is Level.ERROR]
    dlg.close()
