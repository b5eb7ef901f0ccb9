"""The plan editor's live readouts (``ReadoutContext``) and the fit of any plan on a target
(``evaluate.plan_fit``), checked against the core's own figures on SmolLM2 and for speed on
an 80-layer model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.evaluate import (
    ALL_LAYERS,
    DEFAULT_MIXES,
    Device,
    DeviceType,
    Placement,
    TargetFit,
    TargetFitRequest,
    TargetSpec,
    builtin_profiles,
    plan_fit,
    target_fit,
)
from lwq_app.core.evaluate.memory_fit import RuntimeBuffers
from lwq_app.core.importance.sensitivity import (
    Sensitivity,
    SensitivityRequest,
    TensorSensitivity,
    candidate_types,
    measure_sensitivity,
)
from lwq_app.core.jobs.errors import InputError, PlanError
from lwq_app.core.modelfile.inventory import ModelInfo, open_model
from lwq_app.core.optimize import (
    KldPredictor,
    MemoryBudget,
    PlanReadout,
    ReadoutContext,
    nearest_preset,
)
from lwq_app.core.plan import QUANT_PRESETS, plan_from_preset, predict_file_size

GIB = 1 << 30
CTX = 512
CPU = Device("CPU", "a CPU", "CPU", DeviceType.CPU, 64 * GIB, 60 * GIB)
PROFILES = {p.name: p for p in builtin_profiles()}
TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "F16")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("readout")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LWQ_DATA_DIR", str(root / "data"))
        yield root


@pytest.fixture(scope="module")
def model(smollm2: Path, folders: Path) -> ModelInfo:
    return open_model(smollm2)


def _target(name: str, **kw: int) -> TargetSpec:
    return TargetSpec.from_profile(PROFILES[name], context=CTX, **kw)


@pytest.fixture(scope="module")
def fits(model: ModelInfo) -> dict[str, TargetFit]:
    """Fits on a CPU, a unified-memory Mac and a discrete GPU with 10 layers offloaded (one
    measurement of llama.cpp's buffers, cached, for all three)."""
    targets = {
        "cpu": _target("8 GB laptop CPU"),
        "unified": _target("16 GB Apple M-series"),
        "discrete": _target("24 GB RTX", gpu_layers=10),
    }
    return {
        k: target_fit(TargetFitRequest(model.path, t, devices=(CPU,))) for k, t in targets.items()
    }


@pytest.fixture(scope="module")
def predictor(model: ModelInfo, golden_imatrix: Path) -> KldPredictor:
    sens = measure_sensitivity(SensitivityRequest(model.path, golden_imatrix, 16, TYPES))
    return KldPredictor(sens, None, model)


def test_plan_fit_of_a_stock_mix_is_its_row(model: ModelInfo, fits: dict[str, TargetFit]) -> None:
    for kind, fit in fits.items():
        assert fit.target is not None and fit.placement is not None
        rows = {r.label: r for r in fit.rows}
        assert set(rows) == set(DEFAULT_MIXES)
        for preset in DEFAULT_MIXES:
            assert plan_fit(fit, plan_from_preset(model, preset), preset) == rows[preset], kind
        q4 = plan_from_preset(model, "Q4_K_M")
        assert plan_fit(fit, q4) == rows["Q4_K_M"]  # the label defaults to the preset
    edited = plan_from_preset(model, "Q4_K_M").with_types({"blk.29.ffn_down.weight": "Q8_0"})
    d = plan_fit(fits["discrete"], edited)
    row = {r.label: r for r in fits["discrete"].rows}["Q4_K_M"]
    grown = edited.size_bytes - plan_from_preset(model, "Q4_K_M").size_bytes
    assert d.label == "plan"
    assert d.weights_device == row.weights_device + grown  # layer 29 is offloaded
    assert d.weights_host == row.weights_host


def test_plan_fit_refuses(model: ModelInfo, fits: dict[str, TargetFit]) -> None:
    bare = TargetFit((), 0, GIB, True, RuntimeBuffers(CTX, 1, 1, 1), "")
    with pytest.raises(InputError, match="does not keep its target"):
        plan_fit(bare, plan_from_preset(model, "Q4_K_M"))
    deep = plan_from_preset(open_model(fixtures.deep_model(80)), "Q4_K_M")
    with pytest.raises(PlanError, match="80 layers"):
        plan_fit(fits["cpu"], deep)


def test_readout_equals_the_core_figures(
    model: ModelInfo, fits: dict[str, TargetFit], predictor: KldPredictor, golden_imatrix: Path
) -> None:
    ctx = ReadoutContext(
        model, with_imatrix=True, fit=fits["discrete"], predictor=predictor,
        imatrix=golden_imatrix,
    )  # fmt: skip
    q4 = plan_from_preset(model, "Q4_K_M", True)
    edited = q4.with_types({"blk.0.ffn_down.weight": "Q8_0", "blk.3.ffn_up.weight": "Q4_0"})
    for plan in (q4, edited):
        r = ctx.readout(plan)
        assert isinstance(r, PlanReadout)
        assert r.file_size == predict_file_size(plan, model, imatrix=golden_imatrix)
        assert r.tensor_bytes == plan.size_bytes == r.file_size.tensor_data
        assert r.bpw == pytest.approx(plan.bpw, rel=1e-12)
        assert r.fit == plan_fit(fits["discrete"], plan)
        assert r.kld == predictor.predict(plan)
        ref = plan_from_preset(model, r.nearest_preset, True)
        ref_file = predict_file_size(ref, model, imatrix=golden_imatrix).total
        assert r.nearest_delta_bytes == r.file_size.total - ref_file
        others = [
            abs(predict_file_size(plan_from_preset(model, p, True), model,
                                  imatrix=golden_imatrix).total - r.file_size.total)
            for p in QUANT_PRESETS
        ]  # fmt: skip
        assert abs(r.nearest_delta_bytes) == min(others)
    assert ctx.readout(q4).nearest_preset == "Q4_K_M" and ctx.readout(q4).nearest_delta_bytes == 0
    assert ctx.readout(edited).nearest_preset == nearest_preset(model, edited.size_bytes, True)


def test_readout_without_imatrix_target_or_predictor(model: ModelInfo) -> None:
    ctx = ReadoutContext(model, with_imatrix=False)
    needs = {p for p in QUANT_PRESETS if plan_from_preset(model, p).needs_imatrix()}
    assert needs and not needs & {name for name, _ in ctx.presets}
    r = ctx.readout(plan_from_preset(model, "Q2_K"))
    assert r.fit is None and r.kld is None and r.nearest_preset not in needs
    with pytest.raises(PlanError, match="another model"):
        ctx.readout(plan_from_preset(open_model(fixtures.synthetic("moe8")), "Q4_K_M"))


def test_memory_budget_from_target() -> None:
    cpu = MemoryBudget.from_target(_target("8 GB laptop CPU"))
    assert (cpu.bytes, cpu.context, cpu.gpu_layers) == (8 * GIB, CTX, 0)
    mac = MemoryBudget.from_target(_target("16 GB Apple M-series"))
    assert (mac.bytes, mac.gpu_layers) == (16 * GIB, ALL_LAYERS)
    rtx = MemoryBudget.from_target(_target("24 GB RTX"))
    assert (rtx.bytes, rtx.gpu_layers) == (24 * GIB, ALL_LAYERS)
    host = MemoryBudget.from_target(_target("24 GB RTX", gpu_layers=0))
    assert (host.bytes, host.gpu_layers) == (32 * GIB, 0)


def _made_up_sensitivity(model: ModelInfo) -> Sensitivity:
    """Errors for every candidate of every tensor, without measuring (speed only)."""
    tensors = {}
    for i, t in enumerate(m for m in model.tensors if m.quantizable):
        err = {k: (i + 1) / (j + 1) for j, k in enumerate(candidate_types(t, False))}
        tensors[t.name] = TensorSensitivity(t.name, t.shape, False, 16, err, 1.0)
    return Sensitivity("d" * 64, "none", 16, tensors)


def test_fast_on_a_deep_model() -> None:
    """One readout of a 723-tensor plan: file size, fit, nearest mix and prediction."""
    deep = open_model(fixtures.deep_model(80))
    spec = _target("24 GB RTX", gpu_layers=40)
    fit = TargetFit(
        (), spec.device_budget, spec.host_budget, False,
        RuntimeBuffers(CTX, 1 << 24, 1 << 26, 1 << 20), "", 39, True, spec,
        Placement(deep.n_layer, 40),
    )  # fmt: skip
    predictor = KldPredictor(_made_up_sensitivity(deep), None, deep)
    ctx = ReadoutContext(deep, with_imatrix=False, fit=fit, predictor=predictor)
    plan = plan_from_preset(deep, "Q4_K_M").with_types({"blk.40.ffn_down.weight": "Q8_0"})
    assert len(plan.tensors) == 723
    first = ctx.readout(plan)
    assert first.fit is not None and first.kld is not None
    n = 100
    t0 = time.perf_counter()
    for _ in range(n):
        assert ctx.readout(plan) == first
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 10e-3, f"{per_call * 1e3:.2f} ms per readout"
