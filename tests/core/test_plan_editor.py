"""The plan editor's core: type ladders, the layers × kinds grid, plan diffs, reading a
quantized GGUF back as a plan, recipe import and named plans/variants in the project."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.importance.heatmap import heatmap
from lwq_app.core.importance.sensitivity import candidate_types
from lwq_app.core.jobs.errors import InputError, PlanError
from lwq_app.core.modelfile import CANDIDATES, KIND_ORDER, kind_sort_key
from lwq_app.core.modelfile.inventory import ModelInfo, open_model
from lwq_app.core.modelfile.type_catalog import TYPES
from lwq_app.core.plan import (
    QUANT_PRESETS,
    QuantizeRequest,
    QuantPlan,
    TensorPlan,
    diff_plans,
    import_recipe,
    ladder_union,
    make_recipe,
    parse_tensor_types,
    plan_from_gguf,
    plan_from_preset,
    plan_from_recipe,
    plan_grid,
    plan_ladders,
    quantize,
    recipe_import,
    sidecar_path,
    step_changes,
    step_plan,
    tensor_ladder,
)
from lwq_app.core.results import (
    ProjectState,
    ProjectVariant,
    load_state,
    project_plans,
    save_state,
)
from lwq_app.core.results.project import PROJECT_FILE

Q = "blk.0.attn_q.weight"  # 576 columns: 32-wide blocks only
DOWN = "blk.0.ffn_down.weight"  # 1536 columns: every block size


@pytest.fixture(scope="module")
def model() -> ModelInfo:
    return open_model(fixtures.fixture_path("smollm2"))


def _edited(model: ModelInfo) -> QuantPlan:
    """A hand-edited plan with fallbacks (Q4_K/Q3_K on 576 columns) and mixed types."""
    plan = plan_from_preset(model, "Q4_K_M")
    changes = {}
    for t in model.tensors:
        if not t.quantizable or t.layer is None:
            continue
        if t.kind == "ffn_down" and t.layer <= 3:
            changes[t.name] = "Q8_0"
        elif t.kind == "attn_q" and t.layer % 2:
            changes[t.name] = "Q3_K"
        elif t.kind == "ffn_up":
            changes[t.name] = "Q4_0"
    return plan.with_types(changes)


def _big_plan(n_layer: int = 80) -> QuantPlan:
    """A Llama-70B-shaped plan (no file needed): 80 layers × 7 kinds + norms, embd, output."""
    e, kv, ff, vocab = 8192, 1024, 28672, 128256
    shapes = {
        "attn_norm": (e,),
        "attn_q": (e, e),
        "attn_k": (e, kv),
        "attn_v": (e, kv),
        "attn_output": (e, e),
        "ffn_norm": (e,),
        "ffn_gate": (e, ff),
        "ffn_up": (e, ff),
        "ffn_down": (ff, e),
    }

    def tp(name: str, shape: tuple[int, ...], q: bool) -> TensorPlan:
        ty = "Q4_K" if q else "F32"
        return TensorPlan(name, shape, "F16" if q else "F32", ty, ty, q)

    tensors = [tp("token_embd.weight", (e, vocab), True)]
    for i in range(n_layer):
        for kind, shape in shapes.items():
            tensors.append(tp(f"blk.{i}.{kind}.weight", shape, len(shape) > 1))
    tensors += [tp("output_norm.weight", (e,), False), tp("output.weight", (e, vocab), True)]
    return QuantPlan("llama", n_layer, "f" * 16, tuple(tensors))


def _best_of(n: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --- ladders ----------------------------------------------------------------------------------


def test_ladders_are_autos_candidates_in_bpw_order(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q4_K_M")
    for with_imatrix in (False, True):
        ladders = plan_ladders(plan, with_imatrix)
        for t in model.tensors:
            ladder = ladders[t.name]
            if not t.quantizable:
                assert ladder == (t.type,)
                continue
            assert set(ladder) == set(candidate_types(t, with_imatrix, CANDIDATES)), t.name
            bpw = [TYPES[x].bpw for x in ladder]
            assert bpw == sorted(bpw) and len(set(ladder)) == len(ladder)
    narrow = tensor_ladder(plan[Q], False)
    assert narrow == ("IQ4_NL", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16")
    wide = tensor_ladder(plan[DOWN], False)
    assert wide[:3] == ("Q2_K", "IQ3_S", "Q3_K") and "IQ2_XXS" not in wide
    assert tensor_ladder(plan[DOWN], True)[0] == "IQ1_S"  # imatrix-only types join with one
    assert plan_ladders(replace(plan, with_imatrix=True, _index={}))[DOWN][0] == "IQ1_S"


@pytest.mark.parametrize("which", ["smollm2", "phi3-qkv", "moe8", "gqa4-untied"])
def test_ladders_are_what_presets_and_the_fallback_chain_write(which: str) -> None:
    """A ladder is exactly the set of effective types the plan code produces for the tensor
    when any candidate is requested (the fallback chain included), and holds every stock
    mix's type for it; on SmolLM2 (576-wide rows), fused qkv, MoE experts and GQA-4."""
    m = open_model(fixtures.fixture_path("smollm2") if which == "smollm2"
                   else fixtures.synthetic(which))  # fmt: skip
    base = plan_from_preset(m, "Q4_K_M", with_imatrix=True)
    ladders = plan_ladders(base, True)
    quant = [t.name for t in m.tensors if t.quantizable]
    written: dict[str, set[str]] = {n: set() for n in quant}
    for x in CANDIDATES:  # every candidate requested for every tensor at once
        eff = base.with_types(dict.fromkeys(quant, x)).effective_types()
        for n in quant:
            written[n].add(eff[n])
    for n in quant:
        assert set(ladders[n]) == written[n], n
    for preset in QUANT_PRESETS:
        for imx in (False, True):
            ref = plan_from_preset(m, preset, with_imatrix=imx)
            if not imx and ref.needs_imatrix():
                continue  # llama-quantize refuses it without one (IQ1/IQ2 mixes)
            lad = plan_ladders(ref, imx)
            for n in quant:
                assert ref[n].effective in lad[n], (preset, imx, n)


def test_step_moves_each_tensor_along_its_own_ladder(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q4_K_M")  # attn_q: Q4_K -> Q5_0 (fallback), ffn_down Q6_K
    ladders = plan_ladders(plan)
    up = step_changes(plan, [Q, DOWN, "blk.0.attn_norm.weight"], 1, ladders)
    assert up == {Q: "Q5_1", DOWN: "Q8_0"}  # from the *effective* type; the norm is skipped
    assert step_changes(plan, [Q, DOWN], -2, ladders) == {Q: "Q4_0", DOWN: "Q5_K"}
    assert step_changes(plan, [Q], 99, ladders) == {Q: "F16"}  # clamped at the ends
    assert step_changes(plan, [Q], -99, ladders) == {Q: "IQ4_NL"}
    top = plan.with_types({Q: "F16"})
    assert step_changes(top, [Q], 1, ladders) == {}  # nothing moves: nothing reported
    assert step_plan(top, [Q], 1, ladders) is top
    stepped = step_plan(plan, [Q], 1)
    assert stepped[Q].effective == "Q5_1" and stepped.preset is None
    with pytest.raises(PlanError, match=r"blk\.99\.attn_q\.weight"):
        step_changes(plan, ["blk.99.attn_q.weight"], 1, ladders)


def test_step_snaps_off_ladder_types_first(model: ModelInfo) -> None:
    plan = plan_from_preset(model, "Q4_K_M").with_types(
        {DOWN: "IQ2_XXS", "blk.1.ffn_down.weight": "TQ1_0", Q: "BF16"}
    )
    ladders = plan_ladders(plan)  # no imatrix: IQ2_XXS is off the ladder, TQ1_0 never on it
    assert step_changes(plan, [DOWN], 1, ladders) == {DOWN: "Q2_K"}  # first rung above
    assert step_changes(plan, ["blk.1.ffn_down.weight"], 2, ladders) == {
        "blk.1.ffn_down.weight": "IQ3_S"  # snap to Q2_K (one step), then one rung
    }
    assert step_changes(plan, [DOWN], -1, ladders) == {}  # nothing below 2.06 bpw
    assert step_changes(plan, [Q], -1, ladders) == {Q: "Q8_0"}  # last rung below 16 bpw
    assert step_changes(plan, [Q], 1, ladders) == {}  # F16 is not above BF16
    assert ladder_union(ladders, [Q, DOWN])[:2] == ("Q2_K", "IQ3_S")
    assert ladder_union(ladders, [Q]) == ladders[Q]
    with pytest.raises(PlanError, match=r"blk\.77"):
        ladder_union(ladders, ["blk.77.attn_q.weight"])


def test_ladders_and_grid_are_fast_for_80_layers() -> None:
    plan = _big_plan()
    assert len(plan.tensors) == 723
    plan_ladders(plan)  # the native library answers its imatrix question once per process
    assert _best_of(5, lambda: plan_ladders(plan)) < 0.005
    assert _best_of(5, lambda: plan_grid(plan)) < 0.010
    ladders = plan_ladders(plan)
    names = [t.name for t in plan.tensors]
    assert _best_of(3, lambda: step_plan(plan, names, 1, ladders)) < 0.050
    grid = plan_grid(plan)
    assert grid.layers == tuple(range(80)) and len(grid.kinds) == 7
    assert [c.name for c in grid.extra] == ["token_embd.weight", "output.weight"]


# --- grid -------------------------------------------------------------------------------------


def test_grid_matches_the_heatmap_layout(model: ModelInfo) -> None:
    plan = _edited(model)
    grid = plan_grid(plan)
    names = [t.name for t in model.tensors if t.quantizable]
    hm = heatmap({}, "x", names)
    assert grid.layers == hm.layers == tuple(range(30))
    assert grid.kinds == hm.kinds
    assert grid.kinds == (
        "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
    )  # fmt: skip
    assert [c.name for c in grid.extra] == ["token_embd.weight"]  # tied: no output.weight
    cells = [c for row in grid.cells for c in row if c is not None]
    assert len(cells) + len(grid.extra) == len(plan.quantized_tensors())
    assert sum(c.n_bytes for c in [*cells, *grid.extra]) == sum(
        t.size_bytes for t in plan.quantized_tensors()
    )
    i, j = grid.position("blk.1.attn_q.weight")  # type: ignore[misc]
    c = grid.cell(i, j)
    assert c is not None and (c.requested, c.effective, c.fallback) == ("Q3_K", "Q4_0", True)
    assert c.bpw == TYPES["Q4_0"].bpw and (c.layer, c.kind) == (1, "attn_q")
    assert grid.position("token_embd.weight") is None and grid.position("nope") is None
    assert grid.row_names(2)[0] == "blk.2.attn_q.weight" and len(grid.row_names(2)) == 7
    assert grid.column_names(6) == [f"blk.{n}.ffn_down.weight" for n in range(30)]
    assert grid.names_in([0, 1], [0, 6]) == [
        "blk.0.attn_q.weight", "blk.0.ffn_down.weight",
        "blk.1.attn_q.weight", "blk.1.ffn_down.weight",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["phi3-qkv", "moe8", "gqa4-untied"])
def test_grid_columns_on_synthetic_models(kind: str) -> None:
    m = open_model(fixtures.synthetic(kind))
    grid = plan_grid(plan_from_preset(m, "Q4_K_M"))
    hm = heatmap({}, "x", [t.name for t in m.tensors if t.quantizable])
    assert grid.kinds == hm.kinds == tuple(sorted(grid.kinds, key=kind_sort_key))
    known = [k for k in grid.kinds if k in KIND_ORDER]
    assert known == [k for k in KIND_ORDER if k in grid.kinds]
    if kind == "moe8":
        assert "ffn_down_exps" in grid.kinds
    if kind == "phi3-qkv":
        assert "attn_qkv" in grid.kinds
    if kind == "gqa4-untied":
        assert [c.name for c in grid.extra] == ["token_embd.weight", "output.weight"]


# --- diff -------------------------------------------------------------------------------------


def test_diff_counts_effective_types_only(model: ModelInfo) -> None:
    a = plan_from_preset(model, "Q4_K_M")
    b = plan_from_preset(model, "Q3_K_M")
    d = diff_plans(a, b, "Q4_K_M", "Q3_K_M")
    assert d and d.size_delta_bytes == b.size_bytes - a.size_bytes
    assert sum(c.delta_bytes for c in d.changes) == d.size_delta_bytes
    want = [t.name for t in a.tensors if t.effective != b[t.name].effective]
    assert [c.name for c in d.changes] == want
    c = d.changes[0]
    assert (c.before, c.after) == (a[c.name].effective, b[c.name].effective)
    assert json.loads(json.dumps(d.to_dict()))["before"] == "Q4_K_M"
    # Q4_K and Q5_0 on 576 columns write the same bytes: no change
    same = a.with_types({Q: "Q5_0"})
    assert not diff_plans(a, same) and diff_plans(a, same).size_delta_bytes == 0
    other = plan_from_preset(open_model(fixtures.synthetic("moe8")), "Q4_K_M")
    with pytest.raises(PlanError, match="two models"):
        diff_plans(a, other)


# --- recipe import ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["Q3_K_M", "Q4_K_M", "edited"])
def test_recipe_round_trip(model: ModelInfo, which: str) -> None:
    plan = _edited(model) if which == "edited" else plan_from_preset(model, which)
    recipe = make_recipe(plan)
    overrides = parse_tensor_types(recipe.tensor_types)
    assert len(overrides) == recipe.n_overrides == len(plan.quantized_tensors())
    back = plan_from_recipe(model, overrides, recipe.base_ftype, pure=True)
    assert back.effective_types() == plan.effective_types()
    again = make_recipe(back)
    assert again.tensor_types == recipe.tensor_types  # byte-identical
    assert again.base_ftype == recipe.base_ftype
    assert back.preset == (None if which == "edited" else which)
    imp = recipe_import(model, overrides, recipe.base_ftype, pure=True)
    assert imp.unused == () and imp.n_overridden == len(overrides)


def test_parse_tensor_types_mirrors_llama_quantize() -> None:
    text = "ATTN_V=Q8_0  ffn_down=q5_k\n\n\t^blk\\.0\\.=IQ4_NL\r\n"
    assert parse_tensor_types(text) == (
        ("attn_v", "Q8_0"), ("ffn_down", "Q5_K"), ("^blk\\.0\\.", "IQ4_NL"),
    )  # fmt: skip
    assert parse_tensor_types("x\\D=f16") == (("x\\d", "F16"),)  # lowercased, as C++ does
    for text, where, what in [
        ("a=q8_0\nattn_q=q9_9", ":2", "unknown tensor type"),
        ("\n\nattn_q", ":3", "malformed"),
        ("# comment\n", ":1", "malformed"),  # llama-quantize has no comments either
        ("=q8_0", ":1", "missing tensor name"),
        ("attn_q=", ":1", "missing quantization type"),
        ("ok=q8_0\nblk.(0=q8_0", ":2", "invalid regex"),
    ]:
        with pytest.raises(PlanError, match=rf"^types\.txt{where}: .*{what}"):
            parse_tensor_types(text, "types.txt")


def test_parse_a_pasted_command_line() -> None:
    cmd = (
        "llama-quantize --pure --imatrix im.gguf \\\n"
        '  --tensor-type "\\.(\\d*[13579])\\.attn_k=q5_k" --tensor-type=ffn_down=Q6_K \\\n'
        "  --override-kv general.name=str:x --tensor-type 'output=q8_0' in.gguf out.gguf Q4_K_M\n"
    )
    assert parse_tensor_types(cmd) == (
        ("\\.(\\d*[13579])\\.attn_k", "Q5_K"), ("ffn_down", "Q6_K"), ("output", "Q8_0"),
    )  # fmt: skip
    with pytest.raises(PlanError, match=r"cmd:2: unknown tensor type"):
        parse_tensor_types("llama-quantize \\\n --tensor-type attn_q=q3", "cmd")
    with pytest.raises(PlanError, match=r"cmd:1: .*types\.txt; import that file"):
        parse_tensor_types("llama-quantize --tensor-type-file types.txt a b Q4_K_M", "cmd")
    with pytest.raises(PlanError, match=r"cmd:1: --tensor-type without"):
        parse_tensor_types("x --tensor-type", "cmd")


def test_recipe_semantics_first_match_and_mix_rules(model: ModelInfo) -> None:
    # first match wins; a later, more specific pattern has no effect
    ov = parse_tensor_types("attn_v=q8_0 blk\\.0\\.attn_v=q4_0 output_norm=q8_0 nothing=q8_0")
    imp = recipe_import(model, ov, "Q4_K_M", source="r.txt")
    plan = imp.plan
    assert all(plan[f"blk.{i}.attn_v.weight"].effective == "Q8_0" for i in range(30))
    assert plan["blk.0.attn_q.weight"] == plan_from_preset(model, "Q4_K_M")["blk.0.attn_q.weight"]
    reasons = {u.pattern: u.reason for u in imp.unused}
    assert set(reasons) == {"blk\\.0\\.attn_v", "output_norm", "nothing"}
    assert "earlier pattern" in reasons["blk\\.0\\.attn_v"]
    assert "never quantizes" in reasons["output_norm"]
    assert "matches no tensor" in reasons["nothing"]
    assert imp.warnings[0].startswith("r.txt: override #2 ")
    assert "3 override(s) had no effect" in plan.note and plan.preset is None
    # --pure: unmatched tensors get the base type (then the shape fallback)
    pure = plan_from_recipe(model, ov, "Q4_K_M", pure=True)
    assert pure[DOWN].effective == "Q4_K" and pure[Q].effective == "Q5_0"
    # a float base ftype: llama-quantize looks at no override
    f16 = recipe_import(model, ov, "F16")
    assert f16.plan == plan_from_preset(model, "F16") and len(f16.unused) == 4
    with pytest.raises(PlanError, match="base ftype: unknown preset"):
        plan_from_recipe(model, ov, "Q4_K_Q")


def test_recipe_for_another_model(model: ModelInfo) -> None:
    moe = open_model(fixtures.synthetic("moe8"))
    foreign = make_recipe(plan_from_preset(moe, "Q4_K_M"))
    overrides = parse_tensor_types(foreign.tensor_types)
    imp = recipe_import(model, overrides, "Q4_K_M", pure=True)  # shares some names
    assert imp.unused and any("ffn_gate_exps" in w for w in imp.warnings)
    assert all("matches no tensor of" in u.reason for u in imp.unused)
    only_experts = [o for o in overrides if "_exps" in o[0]]
    with pytest.raises(PlanError, match=r"none of its \d+ pattern\(s\) matches .*another model"):
        plan_from_recipe(model, only_experts, "Q4_K_M")


def test_import_recipe_file(model: ModelInfo, tmp_path: Path) -> None:
    plan = _edited(model)
    recipe = make_recipe(plan)
    f = tmp_path / "types.txt"
    f.write_text(recipe.tensor_types)
    back = import_recipe(f, model, recipe.base_ftype, pure=True)
    assert back.effective_types() == plan.effective_types()
    with pytest.raises(PlanError, match="no such tensor-type file"):
        import_recipe(tmp_path / "missing.txt", model, "Q4_K_M")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"attn_q=q8_0\n\xff\xfe")
    with pytest.raises(PlanError, match=r"bad\.txt: not UTF-8 text at byte 12"):
        import_recipe(bad, model, "Q4_K_M")
    bad.write_text("attn_q=q8_0\nattn_k=q8_O\n")
    with pytest.raises(PlanError, match=r"bad\.txt:2: unknown tensor type 'q8_O'"):
        import_recipe(bad, model, "Q4_K_M")


_DRY_RUN = r"""
import json, sys
from lwq_app.core.engine.quant import quantize_file
from lwq_app.core.modelfile.type_catalog import TYPES
from lwq_app.core.plan.stock_mixes import PRESETS
src, cases = sys.argv[1], json.loads(sys.argv[2])
out = []
for ov, pure, preset in cases:
    r = quantize_file(src, "/nonexistent/x.gguf", ftype=PRESETS[preset].ftype,
                      overrides=[(p, TYPES[t].ggml_id) for p, t in ov], pure=pure, dry_run=True)
    assert r.ok, r.log[-3:]
    out.append(r.dry_run_types)
print(json.dumps(out))
"""


def test_recipe_import_agrees_with_llama_cpp_dry_run(model: ModelInfo) -> None:
    """llama.cpp itself resolves the same overrides (a dry run of llama_model_quantize)."""
    cases = [
        # an override skips the mix rule *and its counter*: later attn_v tensors shift
        ("^blk\\.2\\.attn_v\\.weight$=q8_0", False, "Q4_K_M"),
        ("attn_v=q8_0 blk\\.0\\.attn_v=q4_0 \\.1\\d\\.ffn_down=q2_k", False, "Q3_K_M"),
        ("attn_q=q4_k ffn_down=iq4_xs", True, "Q4_K_M"),
        ("\\.(\\d*[13579])\\.attn_k=q5_k ffn=q4_1", False, "Q5_K_M"),
    ]
    parsed = [(list(parse_tensor_types(text)), pure, preset) for text, pure, preset in cases]
    r = subprocess.run(
        [sys.executable, "-c", _DRY_RUN, str(model.path), json.dumps(parsed)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    native = json.loads(r.stdout.strip().splitlines()[-1])
    for (ov, pure, preset), types in zip(parsed, native, strict=True):
        plan = plan_from_recipe(model, [tuple(o) for o in ov], preset, pure=pure)  # type: ignore[misc]
        want = {t.name: t.effective for t in plan.tensors if t.effective != t.source_type}
        assert types == want, (ov, pure, preset)
    shifted = plan_from_recipe(model, parse_tensor_types(cases[0][0]), "Q4_K_M")
    stock = plan_from_preset(model, "Q4_K_M")
    assert shifted["blk.3.attn_v.weight"].effective != stock["blk.3.attn_v.weight"].effective


# --- read back --------------------------------------------------------------------------------


def test_plan_from_gguf_reads_back_the_plan(model: ModelInfo, tmp_path: Path) -> None:
    src = fixtures.fixture_path("smollm2")
    for label, plan in [("stock", plan_from_preset(model, "Q4_K_M")), ("edited", _edited(model))]:
        out = tmp_path / f"{label}.gguf"
        quantize(QuantizeRequest(src, plan, out, threads=2))
        back = plan_from_gguf(out, model)
        assert back == plan  # requested types (fallbacks included), preset, flags
        assert back.requested_types() == plan.requested_types()
        # without lwq's sidecar: a file made elsewhere; requested = the file's types
        side = sidecar_path(out)
        saved = side.read_text()
        side.unlink()
        bare = plan_from_gguf(out, model)
        assert bare.effective_types() == plan.effective_types()
        assert bare.requested_types() == plan.effective_types()
        assert bare.preset == (plan.preset if label == "stock" else None)
        # a sidecar that no longer describes the file is ignored
        data = json.loads(saved)
        data["plan"] = plan_from_preset(model, "Q8_0").to_dict()
        side.write_text(json.dumps(data))
        assert plan_from_gguf(out, model).requested_types() == plan.effective_types()
    with pytest.raises(PlanError, match=r"moe8-v1\.gguf: tensor token_embd\.weight has shape"):
        plan_from_gguf(fixtures.synthetic("moe8"), model)
    other = open_model(fixtures.synthetic("gqa4-untied"))
    with pytest.raises(PlanError, match=r"stock\.gguf: (has no tensor|tensor .* shape)"):
        plan_from_gguf(tmp_path / "stock.gguf", other)


# --- project: named plans and variants --------------------------------------------------------


def _state(tmp_path: Path) -> ProjectState:
    return ProjectState(2, "smol", "llama", "c" * 64, tmp_path / "m.gguf")


def test_named_plans_round_trip(model: ModelInfo, tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    a = plan_from_preset(model, "Q4_K_M")
    b = _edited(model)
    st = _state(tmp_path).with_plan("stock", a).with_plan("mine ✓", b)
    st = st.with_plan("stock", plan_from_preset(model, "Q3_K_M"))  # replaced in place
    assert list(st.plans) == ["stock", "mine ✓"]
    save_state(folder, st)
    loaded = load_state(folder)
    plans = project_plans(loaded, model)
    assert list(plans) == ["stock", "mine ✓"]
    assert plans["mine ✓"].requested_types() == b.requested_types()
    assert plans["stock"].preset == "Q3_K_M"
    renamed = loaded.renamed_plan("mine ✓", "final")
    assert list(renamed.plans) == ["stock", "final"]
    assert list(renamed.without_plan("stock").plans) == ["final"]
    with pytest.raises(InputError, match="has no plan 'nope'"):
        renamed.without_plan("nope")
    with pytest.raises(InputError, match="already has a plan 'stock'"):
        renamed.renamed_plan("final", "stock")
    for bad in ("", "   ", "x" * 81, "a\nb", "tab\there", "bell\x07"):
        with pytest.raises(InputError, match="plan name"):
            st.with_plan(bad, a)
    # a plan stored for another model: PlanError naming the project and the plan
    moe = plan_from_preset(open_model(fixtures.synthetic("moe8")), "Q4_K_M")
    with pytest.raises(PlanError, match=r"project 'smol': plan 'moe'"):
        project_plans(st.with_plan("moe", moe), model)


def test_variants_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    v1 = ProjectVariant("q4", tmp_path / "a.gguf", "stock", "ab" * 32, 123, "2026-01-01T00:00:00Z")
    v2 = ProjectVariant("q3", tmp_path / "b.gguf", None, "cd" * 32, 456, "2026-01-02T00:00:00Z")
    st = _state(tmp_path).with_variant(v1).with_variant(v2)
    v1b = replace(v1, name="q4 again", file_bytes=124)
    st = st.with_variant(v1b)  # same path: replaced in place
    assert st.variants == (v1b, v2)
    save_state(folder, st)
    loaded = load_state(folder)
    assert loaded.variants == (v1b, v2)
    assert loaded.without_variant(tmp_path / "b.gguf").variants == (v1b,)
    assert ProjectVariant.from_json(v2.to_json()) == v2


def test_old_and_malformed_project_files(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    save_state(folder, _state(tmp_path))
    p = folder / PROJECT_FILE
    d = json.loads(p.read_text())
    del d["plans"], d["variants"]  # a version-2 file from before named plans
    p.write_text(json.dumps(d))
    old = load_state(folder)
    assert dict(old.plans) == {} and old.variants == ()
    for key, value, what in [
        ("plans", [], "field 'plans' must be an object"),
        ("plans", {"a\x00": {}}, "field 'plans': plan name"),
        ("plans", {"x": 3}, "field 'plans': plan 'x' must be an object"),
        ("variants", {}, "field 'variants' must be a list"),
        ("variants", [{"name": "v"}], "field 'variants' item 1: field 'path'"),
        (
            "variants",
            [{**_vj(tmp_path), "file_bytes": -1}],
            "field 'variants' item 1: field 'file_bytes'",
        ),
    ]:
        p.write_text(json.dumps({**d, key: value}))
        with pytest.raises(InputError, match=rf"project\.json: {what}"):
            load_state(folder)


def _vj(tmp_path: Path) -> dict:
    return ProjectVariant("v", tmp_path / "v.gguf", None, "0" * 64, 1, "t").to_json()
