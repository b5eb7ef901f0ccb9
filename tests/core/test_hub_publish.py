"""Publishing: the token check and save, the model card from the results store, and the upload
of real GGUF variants with their card to the loopback Hub (real huggingface_hub client,
HF_HUB_DISABLE_XET=1), including a cancelled upload that must leave the remote main as it was.

The variants are SmolLM2's stock Q4_K_M and Q8_0 and a custom plan, really quantized and
measured (``recorded_results``); the card must show exactly the results table's cells and is
checked on the server side: its YAML (``base_model``, ``base_model_relation: quantized``,
``license``, ``tags``, ``pipeline_tag``) and its tables.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from recorded_results import Recorded, recorded

from hub_server import HubServer, hub_env
from lwq_app.core.hub.card import base_model_from_gguf, resolve_base_model, type_groups
from lwq_app.core.hub.provenance import record_source
from lwq_app.core.hub.publish import (
    PublishRequest,
    check_token,
    find_project,
    preview_card,
    publish,
    save_token,
)
from lwq_app.core.jobs.errors import Cancelled, InputError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.results.compare import format_cell, results_table
from lwq_app.core.results.project import PROJECT_VERSION, ProjectState, save_state
from lwq_app.core.results.variants import check_variant_file

pytestmark = pytest.mark.slow

SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct"
REPO = "alice/SmolLM2-135M-lwq-GGUF"


@pytest.fixture(scope="module")
def rec(smollm2: Path, golden_imatrix: Path) -> Recorded:
    return recorded(smollm2, golden_imatrix)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with hub_env(tmp_path, monkeypatch) as server:
        server.add_token("hf_write", "alice", "write")
        server.add_token("hf_read", "bob", "read")
        server.add_token(
            "hf_fine", "carol", fine_grained_scopes=["repo.content.read", "repo.write"]
        )
        yield server


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n"), card[:80]
    head, _, _ = card[4:].partition("\n---\n")
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data


def test_token_check_and_save(hub: HubServer, tmp_path: Path) -> None:
    write = check_token("hf_write")
    assert (write.user, write.role, write.can_write) == ("alice", "write", True)
    read = check_token("hf_read")
    assert (read.role, read.can_write) == ("read", False)
    fine = check_token("hf_fine")
    assert fine.role == "fineGrained" and fine.can_write
    assert "carol:repo.write" in fine.scopes
    assert fine.may_write("carol/x") and not fine.may_write("alice/x")
    with pytest.raises(InputError, match="refused"):
        check_token("hf_nope")
    with pytest.raises(InputError):
        save_token("hf_nope")  # checked before it is saved: nothing written
    token_file = tmp_path / "hf" / "token"
    assert not token_file.exists()
    save_token("hf_write")
    assert token_file.read_text() == "hf_write"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_card_from_the_project_table(rec: Recorded, tmp_path: Path) -> None:
    model = open_model(rec.base)
    state = ProjectState(
        PROJECT_VERSION, model.name, model.architecture, "ab" * 32, rec.base,
        variants=tuple(check_variant_file(p, model) for p in rec.variants),
        eval_settings=rec.settings,
    )  # fmt: skip
    folder = Path(os.environ["LWQ_DATA_DIR"]) / "projects" / "abababababababab"
    folder.mkdir(parents=True, exist_ok=True)
    save_state(folder, state)
    assert find_project(rec.variants) == folder
    # the download recorded the base model's source; the variants were made from it
    record_source(rec.base, SOURCE, "c" * 40)
    assert resolve_base_model(rec.variants, None, [rec.base]) == SOURCE

    card = preview_card(PublishRequest(REPO, rec.variants))
    meta = _front_matter(card)
    assert meta["base_model"] == SOURCE
    assert meta["base_model_relation"] == "quantized"
    assert meta["license"] == "apache-2.0"  # the GGUF's general.license
    assert meta["pipeline_tag"] == "text-generation"
    assert {"gguf", "lwq", "quantized"} <= set(meta["tags"])
    table = results_table(state, model, rec.settings)
    for row in table.rows:
        for key in ("file_size", "bpw", "shrinkage", "kld", "task:arc", "speed:tg16"):
            assert format_cell(row, table.column(key)) in card, (row.name, key)
    assert "## Hardware" in card and "threads" in card  # the bench records' machine
    for line in type_groups(rec.custom):
        assert line in card
    assert f"lwq quantize {rec.base.name} --preset Q4_K_M --imatrix" in card
    assert f"--plan plans/{rec.custom.stem}.json" in card
    # an explicit base model wins; a card edited by the user is published as it is
    assert "base_model: org/other" in preview_card(
        PublishRequest(REPO, (rec.q8_0,), base_model="org/other")
    )
    assert preview_card(PublishRequest(REPO, (rec.q8_0,), card_text="mine\n")) == "mine\n"


def test_base_model_from_gguf_metadata_or_required(rec: Recorded, tmp_path: Path) -> None:
    import gguf
    import numpy as np

    tagged = tmp_path / "tagged.gguf"
    w = gguf.GGUFWriter(str(tagged), "llama")
    w.add_string("general.source.huggingface.repository", SOURCE)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert base_model_from_gguf(tagged) == SOURCE
    loose = tmp_path / rec.q8_0.name  # a copy nothing recorded a source for
    loose.symlink_to(rec.q8_0)
    with pytest.raises(InputError, match="--base-model ORG/NAME"):
        resolve_base_model((loose,), None)
    with pytest.raises(InputError, match="ORG/NAME"):
        resolve_base_model((loose,), "not a repo")


def test_publish_commits_the_variants_and_the_card(rec: Recorded, hub: HubServer) -> None:
    record_source(rec.folder, SOURCE, "c" * 40)
    variants = (rec.q4_k_m, rec.custom)
    request = PublishRequest(REPO, variants, token="hf_write", reference=rec.base)
    events: list[Progress] = []
    result = publish(request, progress=events.append)
    files = hub.repo_files(REPO)
    for v in variants:
        assert files[v.name] == v.read_bytes()
    assert f"plans/{rec.custom.stem}.json" in files
    assert rec.imatrix.name in files
    card = files["README.md"].decode()
    assert card == preview_card(request)
    meta = _front_matter(card)
    assert (meta["base_model"], meta["base_model_relation"]) == (SOURCE, "quantized")
    assert (meta["license"], meta["pipeline_tag"]) == ("apache-2.0", "text-generation")
    assert {"gguf", "lwq", "quantized"} <= set(meta["tags"])
    # the Hub reads the card's YAML as the repo's card data
    from huggingface_hub import HfApi

    card_data = HfApi(endpoint=hub.url, token=False).model_info(REPO).card_data
    assert card_data is not None and card_data.base_model == SOURCE
    assert card_data.to_dict()["base_model_relation"] == "quantized"
    assert "## Model sizes" in card and "## Perplexity and KL divergence" in card
    assert hub.commits(REPO)[-1] == result.commit
    assert result.url.endswith(REPO)
    uploads = [e for e in events if e.phase is Phase.UPLOAD]
    assert uploads and uploads[-1].done == uploads[-1].total == result.uploaded_bytes
    assert all(a.position <= b.position for a, b in itertools.pairwise(events))
    # a read token may not write: refused before any byte is sent
    with pytest.raises(InputError, match="may not write"):
        publish(PublishRequest("bob/x", variants, token="hf_read"))


def test_cancelled_upload_leaves_main_unchanged(rec: Recorded, hub: HubServer) -> None:
    record_source(rec.folder, SOURCE, "c" * 40)
    publish(PublishRequest(REPO, (rec.q8_0,), token="hf_write"))
    before = hub.commits(REPO)
    files_before = hub.repo_files(REPO)
    logged = len(hub.log)
    hub.upload_rate = 40 << 20  # bytes/s the server reads an LFS upload at: cancel lands mid-file
    cancel = CancelToken()
    seen: list[Progress] = []

    def on_progress(p: Progress) -> None:
        seen.append(p)
        if p.phase is Phase.UPLOAD and p.done > 0:
            cancel.cancel()  # mid-upload: the child is killed before its commit

    with pytest.raises(Cancelled):
        publish(
            PublishRequest(REPO, (rec.q4_k_m, rec.custom), token="hf_write"),
            progress=on_progress,
            cancel=cancel,
        )
    assert any(p.phase is Phase.UPLOAD for p in seen)
    assert hub.commits(REPO) == before
    assert hub.repo_files(REPO) == files_before
    deadline = time.monotonic() + 10  # the server logs the cut PUT once it has read its end
    while time.monotonic() < deadline and not any(
        r.method == "PUT" and r.path.startswith("/lfs/upload/") for r in hub.log[logged:]
    ):
        time.sleep(0.05)
    after = hub.log[logged:]
    assert any(r.method == "PUT" and r.path.startswith("/lfs/upload/") for r in after)
    assert not any(r.method == "POST" and "/commit/" in r.path for r in after)
    assert hashlib.sha256(rec.q4_k_m.read_bytes()).hexdigest() not in hub.lfs_objects


def test_cli_login_and_publish(
    rec: Recorded, hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from lwq_app.cli.main import main

    record_source(rec.folder, SOURCE, "c" * 40)
    assert main(["hub", "login", "--token", "hf_nope"]) == 1
    assert "refused" in capsys.readouterr().err
    assert main(["hub", "login", "--token", "hf_write", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["can_write"] is True
    assert main(["hub", "publish", REPO, str(rec.q8_0), "--dry-run"]) == 0
    card = capsys.readouterr().out
    assert _front_matter(card)["base_model"] == SOURCE
    assert REPO not in hub.repos  # a dry run sends nothing
    assert main(["hub", "publish", REPO, str(rec.q8_0), "--private", "--json"]) == 0  # saved token
    out = json.loads(capsys.readouterr().out)
    assert out["commit"] == hub.commits(REPO)[-1]
    assert hub.repos[REPO].private
    assert hub.repo_files(REPO)["README.md"].decode() == card
