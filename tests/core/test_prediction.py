"""The predicted KLD of a plan: the calibrated proxy ``plan --auto`` minimises, or the raw
proxy labelled as such, from SmolLM2's measured sensitivity (golden imatrix)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.importance.sensitivity import (
    CANDIDATES,
    Sensitivity,
    SensitivityRequest,
    TensorSensitivity,
    candidate_types,
    measure_sensitivity,
)
from lwq_app.core.jobs.errors import InputError
from lwq_app.core.modelfile.inventory import ModelInfo, open_model
from lwq_app.core.optimize import (
    CALIBRATED_LABEL,
    PROXY_LABEL,
    Budget,
    Calibration,
    CalibrationPoint,
    KldPrediction,
    KldPredictor,
    groups,
    predict_kld,
    solve_plan,
)
from lwq_app.core.plan import QuantPlan, plan_from_preset, plan_from_types

ROWS = 16
#: the IQ1/IQ2 grids take ~30 s to initialise per process; the stock mixes below need neither
FAST = tuple(t for t in CANDIDATES if not t.startswith(("IQ1", "IQ2")))
STOCK = ("Q3_K_M", "Q4_K_M", "Q5_K_M")


@pytest.fixture(scope="module")
def model(smollm2: Path) -> ModelInfo:
    return open_model(smollm2)


@pytest.fixture(scope="module")
def sens(model: ModelInfo, golden_imatrix: Path) -> Sensitivity:
    return measure_sensitivity(SensitivityRequest(model.path, golden_imatrix, ROWS, FAST))


@pytest.fixture(scope="module")
def cal(model: ModelInfo, sens: Sensitivity) -> Calibration:
    """A calibration of made-up figures (one depth group per kind, factors that differ by
    kind), of this model and imatrix: the formula is checked, not the measurement."""
    points = tuple(
        CalibrationPoint(kind, layers, "Q4_0", proxy=10.0 * (i + 1), kld=0.002 * (i % 4 + 1))
        for i, (kind, layers) in enumerate(groups(model, 1))
    )
    return Calibration(sens.model_hash, sens.imatrix_hash, 0.0125, points)


def _stock(model: ModelInfo) -> dict[str, QuantPlan]:
    return {p: plan_from_preset(model, p, with_imatrix=True) for p in STOCK}


def test_stock_mixes_are_ordered(model: ModelInfo, sens: Sensitivity, cal: Calibration) -> None:
    plans = _stock(model)
    for c in (None, cal):
        v = [predict_kld(plans[p], sens, c, model) for p in STOCK]
        assert v[0].value > v[1].value > v[2].value > 0, c
        assert all(x.unmeasured == () for x in v)


def test_calibrated_value_is_the_formula(
    model: ModelInfo, sens: Sensitivity, cal: Calibration
) -> None:
    plan = plan_from_preset(model, "Q4_K_M", with_imatrix=True)
    got = predict_kld(plan, sens, cal, model)
    factors = cal.factors(model)  # exactly the factors auto_plan uses
    want = cal.baseline_kld + sum(
        max(0.0, factors[t.name] * (e[t.effective] - e["Q8_0"]))
        for t in plan.quantized_tensors()
        for e in [sens.tensors[t.name].error]
    )
    assert got.value == pytest.approx(want, rel=1e-12) and got.unmeasured == ()
    assert got.label == CALIBRATED_LABEL == "predicted KLD" and got.calibrated
    assert isinstance(got, KldPrediction)
    q8 = plan_from_types(model, {t.name: "Q8_0" for t in model.tensors if t.quantizable})
    assert predict_kld(q8, sens, cal, model).value == cal.baseline_kld  # the reference


def test_uncalibrated_value_is_the_raw_proxy(model: ModelInfo, sens: Sensitivity) -> None:
    plan = plan_from_preset(model, "Q3_K_M", with_imatrix=True)
    got = predict_kld(plan, sens)  # no model needed without a calibration
    want = sum(sens.tensors[t.name].error[t.effective] for t in plan.quantized_tensors())
    assert got.value == pytest.approx(want, rel=1e-12)
    assert got.label == PROXY_LABEL == "proxy (uncalibrated)" and not got.calibrated
    assert predict_kld(plan, sens, None, model) == got


def test_auto_plan_minimises_what_is_predicted(model: ModelInfo, sens: Sensitivity) -> None:
    """Uncalibrated, the prediction is the solver's own objective: its total error, and no
    more than the stock mix of the same size."""
    stock = plan_from_preset(model, "Q4_K_M", with_imatrix=True)
    a = solve_plan(model, sens, Budget(stock.size_bytes, "Q4_K_M"))
    p = KldPredictor(sens, None, model)
    assert p.predict(a.plan).value == pytest.approx(a.total_error, rel=1e-9)
    assert p.predict(a.plan).value < p.predict(stock).value


def test_tensor_costs_add_up(model: ModelInfo, sens: Sensitivity, cal: Calibration) -> None:
    plans = _stock(model)
    for c in (None, cal):
        p = KldPredictor(sens, c, model)
        for plan in plans.values():
            parts = [p.tensor_cost(t.name, t.effective) for t in plan.quantized_tensors()]
            assert all(x is not None and x >= 0 for x in parts)
            base = 0.0 if c is None else c.baseline_kld
            assert p.predict(plan).value == pytest.approx(base + sum(parts), rel=1e-12)  # type: ignore[arg-type]
        a, b = plans["Q3_K_M"], plans["Q5_K_M"]
        assert p.delta(a, b) == pytest.approx(p.predict(b).value - p.predict(a).value)
        assert p.delta(a, a) == 0.0
    assert KldPredictor(sens, None, model).tensor_cost("blk.0.attn_q.weight", "Q4_K") is None
    f = cal.factors(model)["blk.0.ffn_down.weight"]
    e = sens.tensors["blk.0.ffn_down.weight"].error
    got = KldPredictor(sens, cal, model).tensor_cost("blk.0.ffn_down.weight", "Q4_K")
    assert got == pytest.approx(f * (e["Q4_K"] - e["Q8_0"]))
    assert KldPredictor(sens, cal, model).tensor_cost("blk.0.ffn_down.weight", "F16") == 0.0


def test_unmeasured_types(model: ModelInfo, sens: Sensitivity, cal: Calibration) -> None:
    """Float types count 0 even where not measured; any other unmeasured type is listed."""
    name = "blk.2.ffn_down.weight"
    trimmed = {
        n: TensorSensitivity(
            s.name, s.shape, s.weighted, s.rows_measured,
            {k: v for k, v in s.error.items() if k not in ("F16", "Q4_K")}, s.energy,
        )
        for n, s in sens.tensors.items()
    }  # fmt: skip
    partial = Sensitivity(sens.model_hash, sens.imatrix_hash, sens.max_rows, trimmed)
    floats = plan_from_types(model, {t.name: "F16" for t in model.tensors if t.quantizable})
    for c in (None, cal):
        base = 0.0 if c is None else c.baseline_kld
        r = predict_kld(floats, partial, c, model)
        assert r.value == base and r.unmeasured == ()
        plan = plan_from_preset(model, "Q4_K_M", True).with_types({name: "Q4_K"})
        r = predict_kld(plan, partial, c, model)
        assert name in r.unmeasured and all(plan[n].effective == "Q4_K" for n in r.unmeasured)
        full = predict_kld(plan, sens, c, model)
        assert full.unmeasured == () and full.value > r.value  # counted 0 where unmeasured


def test_refused_inputs(model: ModelInfo, sens: Sensitivity, cal: Calibration) -> None:
    plan = plan_from_preset(model, "Q4_K_M", True)
    with pytest.raises(InputError, match="needs the model"):
        predict_kld(plan, sens, cal)
    other = Calibration("0" * 64, cal.imatrix_hash, 0.0, cal.points)
    with pytest.raises(InputError, match="another model or imatrix"):
        KldPredictor(sens, other, model)


def deep_sensitivity(model: ModelInfo) -> Sensitivity:
    """A made-up sensitivity of every candidate of every tensor (no measuring: speed only)."""
    tensors = {}
    for i, t in enumerate(m for m in model.tensors if m.quantizable):
        types = candidate_types(t, has_imatrix_entry=False)
        err = {k: (i + 1) * math.exp(-j) for j, k in enumerate(types)}
        tensors[t.name] = TensorSensitivity(t.name, t.shape, False, 16, err, 1.0)
    return Sensitivity("d" * 64, "none", 16, tensors)


def test_fast_on_a_deep_model() -> None:
    deep = open_model(fixtures.deep_model(80))
    s = deep_sensitivity(deep)
    points = tuple(CalibrationPoint(k, g, "Q4_0", 1.0, 0.01) for k, g in groups(deep, 3))
    c = Calibration(s.model_hash, s.imatrix_hash, 0.01, points)
    plan = plan_from_preset(deep, "Q4_K_M")
    assert len(plan.tensors) == 723
    for cal in (None, c):
        p = KldPredictor(s, cal, deep)
        n = 200
        t0 = time.perf_counter()
        for _ in range(n):
            r = p.predict(plan)
        per_call = (time.perf_counter() - t0) / n
        assert r.unmeasured == () and r.value > 0
        assert per_call < 5e-3, f"{per_call * 1e3:.2f} ms per prediction"
