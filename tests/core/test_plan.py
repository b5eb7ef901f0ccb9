from __future__ import annotations

import json
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.jobs.errors import PlanError
from lwq_app.core.modelfile.inventory import ModelInfo, open_model
from lwq_app.core.plan.quant_plan import load_plan, plan_from_preset, plan_from_types
from lwq_app.core.plan.recipe import make_recipe


@pytest.fixture(scope="module")
def model() -> ModelInfo:
    return open_model(fixtures.fixture_path("smollm2"))


def test_json_round_trip(model: ModelInfo, tmp_path: Path) -> None:
    plan = plan_from_preset(model, "Q4_K_M", with_imatrix=True)
    p = tmp_path / "plan.json"
    plan.save(p)
    back = load_plan(p, model)
    assert back.requested_types() == plan.requested_types()
    assert back.effective_types() == plan.effective_types()
    assert back.preset == "Q4_K_M" and back.with_imatrix
    assert back.size_bytes == plan.size_bytes
    assert back.content_hash() == plan.content_hash()


def test_edit_drops_preset_and_keeps_requested(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q4_K_M")
    edited = plan.with_types({"blk.0.ffn_down.weight": "Q8_0", "blk.1.attn_q.weight": "Q3_K"})
    assert edited.preset is None
    assert edited["blk.0.ffn_down.weight"].effective == "Q8_0"
    q = edited["blk.1.attn_q.weight"]
    assert (q.requested, q.effective) == ("Q3_K", "Q4_0")  # 576 columns: Q3_K falls back
    assert plan["blk.1.attn_q.weight"].requested == "Q4_K"  # the original is untouched
    with pytest.raises(PlanError, match=r"blk\.1\.attn_q\.weight: Q3_K .*ne0=576.*Q4_0"):
        plan.with_types({"blk.1.attn_q.weight": "Q3_K"}, strict=True)


def test_size_is_sum_of_effective_types(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q8_0")
    by_hand = sum(
        (t.n_params // 32) * 34 if t.quantizable else model.tensor(t.name).n_bytes
        for t in plan.tensors
    )
    assert plan.size_bytes == by_hand
    assert abs(plan.bpw - by_hand * 8 / model.n_params) < 1e-12


def test_unknown_and_missing_tensors(model: ModelInfo, tmp_path: Path) -> None:
    types = plan_from_preset(model, "Q4_K_M").requested_types()
    with pytest.raises(PlanError, match=r"not in .*: blk\.99\.attn_q\.weight"):
        plan_from_types(model, {**types, "blk.99.attn_q.weight": "Q4_K"})
    del types["blk.7.ffn_up.weight"]
    with pytest.raises(PlanError, match=r"no type for tensor\(s\): blk\.7\.ffn_up\.weight"):
        plan_from_types(model, types)


def test_bad_types(model: ModelInfo) -> None:
    types = plan_from_preset(model, "Q4_K_M").requested_types()
    with pytest.raises(PlanError, match=r"blk\.2\.attn_v\.weight: unknown tensor type 'Q9_K'"):
        plan_from_types(model, {**types, "blk.2.attn_v.weight": "Q9_K"})
    with pytest.raises(PlanError, match=r"blk\.2\.attn_norm\.weight is never quantized"):
        plan_from_types(model, {**types, "blk.2.attn_norm.weight": "Q8_0"})


def test_plan_file_errors(model: ModelInfo, tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text('{\n "format": "lwq-plan",\n "version": 1,\n "tensors": {,}\n}\n')
    with pytest.raises(PlanError, match=r"broken\.json:4:\d+: invalid JSON"):
        load_plan(p, model)
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(PlanError, match="not an lwq plan"):
        load_plan(p, model)
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "nope.json", model)
    other = open_model(fixtures.synthetic("phi3-qkv"))
    plan_from_preset(other, "Q4_K_M").save(p)
    with pytest.raises(PlanError, match="architecture 'phi3'"):
        load_plan(p, model)


def test_needs_imatrix(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q4_K_M")
    assert plan.needs_imatrix() == []
    low = plan.with_types({"blk.0.ffn_down.weight": "IQ2_XXS", "token_embd.weight": "IQ2_XXS"})
    # token_embd/output are exempt, as in llama.cpp's tensor_requires_imatrix
    assert low.needs_imatrix("Q4_K_M") == ["blk.0.ffn_down.weight"]
    assert plan_from_preset(model, "Q2_K_S").needs_imatrix() != []  # Q2_K inside a Q2_K_S file
    assert plan_from_preset(model, "Q2_K").needs_imatrix() == []


def test_layer_summary(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q4_K_M")
    rows = plan.layer_summary()
    assert rows[0].layer is None and [r.layer for r in rows[1:]] == list(range(30))
    assert sum(r.bytes for r in rows) == plan.size_bytes
    assert rows[1].fallbacks > 0


def test_recipe_has_one_anchored_pattern_per_tensor(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q4_K_M")
    r = make_recipe(plan, "Q8_0")
    lines = r.tensor_types.strip().splitlines()
    assert len(lines) == r.n_overrides == 211
    assert "^blk\\.0\\.attn_q\\.weight$=q5_0" in lines
    assert all(ln.startswith("^") and "$=" in ln for ln in lines)
    cmd = r.command("in.gguf", "out.gguf", "types.txt", "im.gguf", 2)
    assert cmd == [
        "llama-quantize",
        "--pure",
        "--imatrix",
        "im.gguf",
        "--tensor-type-file",
        "types.txt",
        "in.gguf",
        "out.gguf",
        "Q8_0",
        "2",
    ]
