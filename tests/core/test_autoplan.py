"""Sensitivity with ggml's kernels and the automatic plan under a budget."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fixtures
from lwq_app.core.engine.kernels import quantize_rows
from lwq_app.core.importance.heatmap import sensitivity_heatmap
from lwq_app.core.importance.sensitivity import (
    CANDIDATES,
    Sensitivity,
    SensitivityRequest,
    candidate_types,
    measure_sensitivity,
    read_rows,
)
from lwq_app.core.jobs.errors import Cancelled, ImatrixError, PlanError
from lwq_app.core.jobs.progress import CancelToken
from lwq_app.core.modelfile.imatrix_file import read_imatrix
from lwq_app.core.modelfile.inventory import ModelInfo, open_model
from lwq_app.core.modelfile.type_catalog import TYPES
from lwq_app.core.optimize.auto_plan import (
    Budget,
    Option,
    budget_from_bpw,
    budget_from_memory,
    explain,
    frontier,
    kv_cache_bytes,
    solve_plan,
)
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.plan.stock_mixes import QUANT_PRESETS

ROWS = 16
#: the IQ1/IQ2 grids take ~30 s to initialise per process; synthetic models skip them
FAST = tuple(t for t in CANDIDATES if not t.startswith(("IQ1", "IQ2")))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lwq-cache")


@pytest.fixture(autouse=True)
def _cache_env(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWQ_CACHE_DIR", str(cache))


@pytest.fixture(scope="module")
def measured(
    smollm2: Path, golden_imatrix: Path, cache: Path
) -> dict[str, tuple[ModelInfo, Sensitivity]]:
    """Sensitivity of SmolLM2 (golden imatrix) and of each synthetic model (no imatrix)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LWQ_CACHE_DIR", str(cache))
    try:
        out = {
            "smollm2": (
                open_model(smollm2),
                measure_sensitivity(SensitivityRequest(smollm2, golden_imatrix, ROWS)),
            )
        }
        for kind in fixtures.SYNTHETIC:
            p = fixtures.synthetic(kind)
            sens = measure_sensitivity(SensitivityRequest(p, None, ROWS, FAST))
            out[kind] = (open_model(p), sens)
    finally:
        mp.undo()
    return out


def test_quantized_bytes_equal_llama_quantize(
    smollm2: Path, golden_imatrix: Path, golden_dir: Path
) -> None:
    """ggml_quantize_chunk with the imatrix writes exactly what native llama-quantize wrote."""
    model = open_model(smollm2)
    weights = read_imatrix(golden_imatrix).weights()
    ref = json.loads((golden_dir / "quantize.json").read_text())["Q4_K_M"]
    for name in ("blk.0.ffn_down.weight", "blk.0.attn_q.weight", "blk.7.attn_v.weight"):
        t = model.by_name[name]
        type_name = ref["types"][name]
        data = quantize_rows(TYPES[type_name].ggml_id, read_rows(t, model, None), weights[name])
        assert hashlib.sha256(data).hexdigest() == ref["sha256"][name], name


def test_sensitivity_table(measured: dict) -> None:
    model, sens = measured["smollm2"]
    assert set(sens.tensors) == {t.name for t in model.tensors if t.quantizable}
    down = sens.tensors["blk.5.ffn_down.weight"]
    assert down.weighted and down.rows_measured == ROWS
    assert down.error["F16"] == 0.0
    assert down.error["Q8_0"] < down.error["Q6_K"] < down.error["Q4_K"] < down.error["Q2_K"]
    assert 0 < down.relative("Q4_K") < 0.05
    q = sens.tensors["blk.0.attn_q.weight"]  # 576 columns: no 256-block type is valid
    assert "Q4_K" not in q.error and {"Q4_0", "Q5_1", "Q8_0"} <= set(q.error)
    assert not sens.tensors["token_embd.weight"].weighted  # no imatrix data: w = 1
    assert {"IQ1_S", "IQ2_XXS", "Q2_K"} <= set(down.error)


def test_candidates_respect_imatrix_rules() -> None:
    model = open_model(fixtures.synthetic("gqa4-untied"))
    blk = candidate_types(model.by_name["blk.0.ffn_down.weight"], has_imatrix_entry=False)
    assert not {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"} & set(blk)
    assert {"Q2_K", "IQ3_S", "Q4_K", "Q8_0", "F16"} <= set(blk)
    emb = candidate_types(model.by_name["token_embd.weight"], has_imatrix_entry=False)
    assert "IQ2_S" in emb and "IQ2_XXS" not in emb  # exempt from llama's rule, not from ggml's
    full = candidate_types(model.by_name["blk.0.ffn_down.weight"], has_imatrix_entry=True)
    assert {"IQ1_S", "IQ2_XXS", "IQ3_XXS"} <= set(full)


def test_sensitivity_heatmap(measured: dict) -> None:
    _, sens = measured["smollm2"]
    hm = sensitivity_heatmap(sens, "Q4_K", relative=True)
    j = hm.kinds.index("ffn_down")
    assert hm.present[:, j].all()  # 1536 columns: Q4_K valid
    assert not hm.present[:, hm.kinds.index("attn_q")].any()  # 576 columns: missing, not 0
    assert hm.cell(3, "ffn_down") == pytest.approx(
        sens.tensors["blk.3.ffn_down.weight"].relative("Q4_K")
    )


def test_sensitivity_is_cached(smollm2: Path, golden_imatrix: Path, measured: dict) -> None:
    t0 = time.monotonic()
    again = measure_sensitivity(SensitivityRequest(smollm2, golden_imatrix, ROWS))
    assert time.monotonic() - t0 < 10  # data hash only, no measuring
    assert again.to_dict() == measured["smollm2"][1].to_dict()


def test_imatrix_for_another_model(golden_imatrix: Path) -> None:
    with pytest.raises(ImatrixError, match="another model"):
        measure_sensitivity(
            SensitivityRequest(fixtures.synthetic("gqa4-untied"), golden_imatrix, ROWS)
        )


def test_cancel_sensitivity(smollm2: Path, golden_imatrix: Path, cache: Path) -> None:
    cancel = CancelToken()
    started = threading.Event()
    result: list[float] = []

    def run() -> None:
        try:
            measure_sensitivity(
                SensitivityRequest(smollm2, golden_imatrix, ROWS + 1),
                progress=lambda p: started.set(),
                cancel=cancel,
            )
        except Cancelled:
            result.append(time.monotonic())

    def files() -> set[Path]:  # the cache folder itself may be created by this first use
        return {p for p in cache.rglob("*") if p.is_file()}

    before = files()
    th = threading.Thread(target=run)
    th.start()
    assert started.wait(120)
    t0 = time.monotonic()
    cancel.cancel()
    th.join(10)
    assert result and result[0] - t0 < 1.0
    assert files() == before


def test_frontier_drops_dominated() -> None:
    opts = [Option("a", 10, 5.0), Option("b", 12, 6.0), Option("c", 14, 1.0), Option("d", 10, 7.0)]
    assert [o.type for o in frontier(opts)] == ["a", "c"]


@pytest.mark.parametrize("kind", ["smollm2", *fixtures.SYNTHETIC])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frac=st.floats(min_value=0.0, max_value=1.0))
def test_budget_respected_and_used(measured: dict, kind: str, frac: float) -> None:
    model, sens = measured[kind]
    fixed = sum(t.n_bytes for t in model.tensors if not t.quantizable)
    sizes = [[model.by_name[n].bytes_as(k) for k in s.error] for n, s in sens.tensors.items()]
    lo = fixed + sum(min(x) for x in sizes)
    hi = fixed + sum(max(x) for x in sizes)
    budget = Budget(int(lo + frac * (hi - lo)), f"{frac:.3f}")
    a = solve_plan(model, sens, budget, with_imatrix=kind == "smollm2")
    assert a.plan.size_bytes <= budget.bytes
    assert a.plan.size_bytes >= 0.99 * budget.bytes
    assert not a.plan.warnings()  # only types valid for each shape
    assert a.plan.needs_imatrix() == [] or kind == "smollm2"
    b = solve_plan(model, sens, budget, with_imatrix=kind == "smollm2")
    assert b.plan.effective_types() == a.plan.effective_types()


@pytest.mark.parametrize("preset", ["Q3_K_M", "Q4_K_M", "Q5_K_M"])
def test_stock_sizes(measured: dict, preset: str) -> None:
    model, sens = measured["smollm2"]
    stock = plan_from_preset(model, preset, with_imatrix=True)
    a = solve_plan(model, sens, Budget(stock.size_bytes, preset))
    assert 0.99 * stock.size_bytes <= a.plan.size_bytes <= stock.size_bytes
    rows = explain(a.plan, model, preset, True)
    assert rows and all(r.auto != r.stock for r in rows)


def test_budget_below_smallest_plan(measured: dict) -> None:
    model, sens = measured["smollm2"]
    with pytest.raises(PlanError, match="below the smallest possible plan"):
        solve_plan(model, sens, Budget(1000, "1 kB"))


def test_budget_conversions(measured: dict) -> None:
    model, _ = measured["smollm2"]
    assert budget_from_bpw(model, 4.0).bytes == model.n_params // 2
    # SmolLM2: 30 layers, 3 kv heads of 64: 30 · 4096 · 2 · 192 · 2 bytes
    assert kv_cache_bytes(model, 4096) == 30 * 4096 * 2 * 192 * 2
    m = budget_from_memory(model, 500_000_000, 4096)
    assert 0 < m.bytes < 500_000_000 - kv_cache_bytes(model, 4096)


def test_memory_budget_uses_what_llama_cpp_allocates(smollm2: Path) -> None:
    """The buffers are llama.cpp's own, read from a real context: the KV cache agrees with
    the shape formula (to llama.cpp's 0.01 MiB log rounding), the compute buffer is
    measured, and the weights get exactly the rest."""
    from lwq_app.core.evaluate.memory_fit import measure_buffers, parse_buffer_log
    from lwq_app.core.modelfile.inventory import open_model

    model = open_model(smollm2)
    buf = measure_buffers(smollm2, 4096)
    assert abs(buf.kv_cache - kv_cache_bytes(model, 4096)) <= 0.01 * (1 << 20)
    assert buf.compute > 10 << 20 and buf.output > 0
    m = budget_from_memory(model, 500_000_000, 4096, buf)
    assert m.bytes == 500_000_000 - buf.total and "measured" in m.label
    with pytest.raises(PlanError, match="leave nothing for the weights"):
        budget_from_memory(model, buf.total, 4096, buf)
    two = parse_buffer_log(
        ["llama_context:        CPU compute buffer size =   100.00 MiB",
         "llama_context:      CUDA0 compute buffer size =    50.50 MiB", "unrelated"],
        512,
    )  # fmt: skip
    # each line rounded up by half of its 0.01 MiB precision
    assert two.compute == int(100.005 * (1 << 20)) + int(50.505 * (1 << 20))
    assert two.kv_cache == 0


def test_cli_plan_auto(measured: dict, tmp_path: Path, cache: Path) -> None:
    model_path = fixtures.synthetic("gqa4-untied")
    out = tmp_path / "auto.json"
    env = {"LWQ_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", "plan", str(model_path), "--auto",
         "--target-bpw", "4.5", "--max-rows", str(ROWS), "--types", ",".join(FAST),
         "-o", str(out), "--json"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["used"] <= 1.0 and d["used"] >= 0.99 and out.exists()
    vs = d["vs_stock"]  # explained against the stock mix nearest in size
    assert vs["preset"] in QUANT_PRESETS
    assert sum(vs["bits_by_kind"].values()) == sum(vs["bits_by_layer"].values())
    assert "bits gained (+) / lost (-) by kind" in r.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", "plan", str(model_path), "--auto",
         "--target-size", "10kB", "--max-rows", str(ROWS), "--types", ",".join(FAST)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert bad.returncode == 1 and "smallest possible plan" in bad.stderr


@pytest.mark.parametrize("cmd", ["imatrix", "stats", "plan"])
def test_help(cmd: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", cmd, "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "usage: lwq " + cmd in r.stdout


@pytest.mark.slow
def test_calibration_with_measured_kld(
    smollm2: Path,
    golden_imatrix: Path,
    measured: dict,
    wiki_text: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One depth group per kind, one KLD chunk per probe: factors come from real KLD runs."""
    from lwq_app.core.optimize.calibration import CalibrateRequest, Calibration, calibrate

    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    text = tmp_path / "wiki.txt"
    text.write_text(wiki_text[:40000], encoding="utf-8")
    model, sens = measured["smollm2"]
    request = CalibrateRequest(smollm2, golden_imatrix, text, groups=1, chunks=1, threads=2)
    cal = calibrate(request).calibration
    kinds = {p.kind for p in cal.points}
    assert kinds == {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                     "ffn_down", "token_embd"}  # fmt: skip
    assert all(p.proxy > 0 for p in cal.points) and cal.baseline_kld >= 0
    assert sum(p.kld for p in cal.points) > 0
    cal.save(tmp_path / "cal.json")
    again = Calibration.load(tmp_path / "cal.json")
    factors = again.factors(model)
    assert set(factors) == {t.name for t in model.tensors if t.quantizable}
    stock = plan_from_preset(model, "Q4_K_M", with_imatrix=True)
    a = solve_plan(model, sens, Budget(stock.size_bytes, "Q4_K_M"), factors=factors)
    assert 0.99 * stock.size_bytes <= a.plan.size_bytes <= stock.size_bytes


def test_explanation_by_layer_and_kind_against_nearest_stock_mix() -> None:
    """Per-layer and per-kind bit deltas add up to the size difference with the stock mix."""
    from lwq_app.core.optimize.auto_plan import explain_groups, nearest_preset

    model = open_model(fixtures.fixture_path("smollm2"))
    q4 = plan_from_preset(model, "Q4_K_M", True)
    assert nearest_preset(model, q4.size_bytes, True) == "Q4_K_M"
    edited = q4.with_types({"blk.0.ffn_down.weight": "Q8_0", "blk.7.attn_q.weight": "Q4_0"})
    ex = explain_groups(edited, model, None, True)
    assert ex.preset == "Q4_K_M"
    assert sum(ex.by_layer.values()) == sum(ex.by_kind.values()) == ex.size_delta_bytes * 8
    # ffn_down rows are 1536 wide: Q8_0 1632 bytes/row vs Q6_K 1260, over 576 rows
    d_down = (1536 // 32 * 34 - 1536 // 256 * 210) * 576 * 8
    assert ex.by_layer[0] == ex.by_kind["ffn_down"] == d_down
    assert ex.by_kind["attn_q"] == (18 - 22) * (576 // 32) * 576 * 8  # Q5_0 -> Q4_0
    assert {r.tensor for r in ex.tensors} == {"blk.0.ffn_down.weight", "blk.7.attn_q.weight"}
