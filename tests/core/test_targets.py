"""Hardware targets and the memory picture, on SmolLM2 F16 and a real llama.cpp context:
profiles (built-in, the user's file), this machine from its devices, llama.cpp's layer
placement, and ``target_fit`` checked against the core's own figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lwq_app.core.evaluate import (
    ALL_LAYERS,
    DEFAULT_MIXES,
    Device,
    DeviceType,
    HardwareProfile,
    Placement,
    TargetFitRequest,
    TargetSpec,
    builtin_profiles,
    load_profiles,
    measure_buffers,
    save_profiles,
    target_fit,
    this_machine,
)
from lwq_app.core.evaluate import targets as targets_module
from lwq_app.core.evaluate.memory_fit import parse_buffer_log
from lwq_app.core.jobs.errors import Cancelled, InputError, ModelFileError, PlanError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.modelfile.inventory import ModelInfo, open_model
from lwq_app.core.plan import PlanRequest, make_plan
from lwq_app.core.plan.stock_mixes import QUANT_PRESETS

GIB = 1 << 30
CTX = 512
CPU = Device("CPU", "a CPU", "CPU", DeviceType.CPU, 64 * GIB, 60 * GIB)
BUILTIN = {p.name: p for p in builtin_profiles()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Fresh data and cache folders for this module: the first fit really measures."""
    root = tmp_path_factory.mktemp("targets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LWQ_DATA_DIR", str(root / "data"))
        mp.setenv("LWQ_CACHE_DIR", str(root / "cache"))
        yield root


@pytest.fixture(scope="module")
def model(smollm2_f16: Path, folders: Path) -> ModelInfo:
    return open_model(smollm2_f16)


@pytest.fixture(scope="module")
def buffers(model: ModelInfo) -> object:
    """The buffers of a context of CTX tokens, measured independently of target_fit."""
    return measure_buffers(model.path, CTX)


def _target(name: str, **kw: int) -> TargetSpec:
    return TargetSpec.from_profile(BUILTIN[name], context=CTX, **kw)


# --- profiles -------------------------------------------------------------------------------


def test_builtin_profiles() -> None:
    assert set(BUILTIN) >= {"16 GB Apple M-series", "24 GB RTX", "8 GB laptop CPU"}
    mac, rtx, cpu = (
        BUILTIN["16 GB Apple M-series"],
        BUILTIN["24 GB RTX"],
        BUILTIN["8 GB laptop CPU"],
    )
    assert (mac.backend, mac.device_memory, mac.unified) == ("Metal", 16 * GIB, True)
    assert (rtx.backend, rtx.device_memory, rtx.host_memory) == ("CUDA", 24 * GIB, 32 * GIB)
    assert (cpu.backend, cpu.device_memory, cpu.host_memory) == ("CPU", 0, 8 * GIB)
    assert all(p.builtin and p.description for p in BUILTIN.values())


def test_user_profiles_round_trip(folders: Path) -> None:
    path = folders / "data" / "hardware-profiles.json"
    assert load_profiles() == builtin_profiles() and not path.exists()
    mine = HardwareProfile("My desktop", "Vulkan", 12 * GIB, 64 * GIB, False, "RX 6700")
    edited = HardwareProfile("24 GB RTX", "CUDA", 24 * GIB, 128 * GIB, False, "more RAM")
    save_profiles([*builtin_profiles(), mine, edited])
    rows = json.loads(path.read_text())["profiles"]
    assert [r["name"] for r in rows] == ["My desktop", "24 GB RTX"]  # built-ins not written
    got = load_profiles()
    assert mine in got and edited in got and BUILTIN["24 GB RTX"] not in got
    assert [p.name for p in got].count("24 GB RTX") == 1
    with pytest.raises(InputError, match="My desktop is taken"):
        save_profiles([mine, mine])  # would write a file load_profiles refuses
    assert load_profiles() == got  # the file was left as it was
    path.unlink()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "unreadable hardware profiles"),
        ('{"format": "other"}', "not an lwq hardware-profiles file"),
        ('{"format": "lwq-hardware-profiles", "profiles": {}}', "'profiles' must be a list"),
        ('{"format": "lwq-hardware-profiles", "profiles": [{"name": "ok", "backend": "CPU",'
         ' "device_memory": 0, "host_memory": 1, "unified": false}, {"name": "big",'
         ' "backend": "CUDA", "device_memory": -1, "host_memory": 1, "unified": false}]}',
         r"profile 2 \(big\): field 'device_memory' must be an integer >= 0, not -1"),
        ('{"format": "lwq-hardware-profiles", "profiles": [{"name": "x", "backend": "CPU",'
         ' "device_memory": 0, "host_memory": 1, "unified": "no"}]}',
         r"profile 1 \(x\): field 'unified' must be true or false"),
        ('{"format": "lwq-hardware-profiles", "profiles": [3]}', "profile 1: expected an object"),
    ],
)  # fmt: skip
def test_bad_profiles_file_names_file_and_entry(folders: Path, text: str, match: str) -> None:
    path = folders / "data" / "hardware-profiles.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    try:
        with pytest.raises(InputError, match=match) as e:
            load_profiles()
        assert str(path) in str(e.value)
    finally:
        path.unlink()


def test_this_machine_from_its_devices() -> None:
    cpu_only = this_machine([CPU])
    assert (cpu_only.name, cpu_only.backend, cpu_only.device_memory) == ("This machine", "CPU", 0)
    assert cpu_only.host_memory == 64 * GIB and not cpu_only.unified
    cuda = [
        CPU,
        Device("CUDA0", "RTX 4090", "CUDA", DeviceType.GPU, 24 * GIB, 20 * GIB),
        Device("CUDA1", "RTX 4090", "CUDA", DeviceType.GPU, 24 * GIB, 23 * GIB),
    ]
    two = this_machine(cuda)
    assert (two.backend, two.device_memory, two.host_memory, two.unified) == (
        "CUDA", 48 * GIB, 64 * GIB, False,
    )  # fmt: skip
    assert "CUDA1: RTX 4090" in two.description
    mac = this_machine([CPU, Device("Metal", "Apple M2", "Metal", DeviceType.GPU, 11 * GIB, 0)])
    assert (mac.backend, mac.device_memory, mac.unified) == ("Metal", 11 * GIB, True)


def test_target_spec_json() -> None:
    t = _target("24 GB RTX", gpu_layers=12)
    assert TargetSpec.from_json(t.to_json()) == t
    assert (
        _target("24 GB RTX").gpu_layers == ALL_LAYERS and _target("8 GB laptop CPU").gpu_layers == 0
    )
    with pytest.raises(InputError, match=r"project\.json: target: field 'host_memory'"):
        TargetSpec.from_json({**t.to_json(), "host_memory": "32GB"}, "project.json")
    with pytest.raises(InputError, match="unknown field 'vram'"):
        TargetSpec.from_json({**t.to_json(), "vram": 1})
    assert (t.memory_kind, t.device_budget, t.host_budget) == ("discrete", 24 * GIB, 32 * GIB)
    mac = _target("16 GB Apple M-series")
    assert (mac.memory_kind, mac.device_budget, mac.host_budget) == ("unified", 16 * GIB, 0)
    cpu = _target("8 GB laptop CPU")
    assert (cpu.memory_kind, cpu.device_budget, cpu.host_budget) == ("cpu", 0, 8 * GIB)


def test_placement_follows_llama_cpp() -> None:
    """``i_gpu_start = n_layer + 1 - n_gpu_layers``: the output layer goes first."""
    assert Placement(30, 0).repeating == 0 and not Placement(30, 0).output_on_device
    one = Placement(30, 1)
    assert one.output_on_device and one.repeating == 0
    ten = Placement(30, 10)
    assert ten.repeating == 9 and [x for x in range(30) if ten.on_device(x, "attn_q")] == list(
        range(21, 30)
    )
    assert Placement(30, 31).repeating == 30 == Placement(30, ALL_LAYERS).repeating
    assert not Placement(30, ALL_LAYERS).on_device(None, "token_embd")
    assert Placement(30, 1).on_device(None, "output_norm")


def test_buffer_log_is_split_by_device() -> None:
    lines = [
        "llama_kv_cache:      CUDA0 KV buffer size =    40.00 MiB",
        "llama_kv_cache:        CPU KV buffer size =    10.00 MiB",
        "llama_kv_cache: size =   50.00 MiB (  4096 cells,  30 layers,  1/1 seqs)",
        "llama_context:  CUDA_Host  output buffer size =     0.19 MiB",
        "llama_context:      CUDA0 compute buffer size =   100.00 MiB",
        "llama_context:  CUDA_Host compute buffer size =     9.01 MiB",
    ]
    b = parse_buffer_log(lines, 4096)
    mib = 1 << 20
    assert b.kv_cache == int(50.005 * mib) and b.kv_device == int(40.005 * mib)
    assert b.compute == int(100.005 * mib) + int(9.015 * mib)
    assert b.compute_device == int(100.005 * mib)
    assert b.output == int(0.195 * mib) and b.output_device == 0


# --- the fit on a real context --------------------------------------------------------------


def test_cpu_target_is_measured(model: ModelInfo, buffers, folders: Path) -> None:  # type: ignore[no-untyped-def]
    events: list[Progress] = []
    fit = target_fit(
        TargetFitRequest(model.path, _target("8 GB laptop CPU"), devices=(CPU,)),
        progress=events.append,
    )
    assert fit.measured and fit.buffers == buffers and "measured" in fit.note
    assert (fit.device_budget, fit.host_budget) == (0, 8 * GIB)
    assert [r.label for r in fit.rows] == list(DEFAULT_MIXES) == ["F16", *QUANT_PRESETS]
    rows = {r.label: r for r in fit.rows}
    f16, q4km = rows["F16"], rows["Q4_K_M"]
    assert f16.weights_host == model.tensor_data_bytes and f16.weights_device == 0
    plan_bytes = make_plan(PlanRequest(model.path, preset="Q4_K_M")).plan.size_bytes
    assert q4km.weights == q4km.weights_host == plan_bytes < f16.weights
    for r in fit.rows:
        assert (r.kv_host, r.compute_host) == (buffers.kv_cache, buffers.compute + buffers.output)
        assert r.device_total == 0 and r.total == r.weights + buffers.total
        assert r.fits == (r.total <= 8 * GIB)
    overall = [p.overall for p in events]
    assert overall == sorted(overall) and overall[-1] == 1.0
    assert {Phase.HASH, Phase.LOAD} <= {p.phase for p in events}
    assert list((folders / "cache" / "buffers").glob("*.json"))


def test_refit_is_cached(model: ModelInfo, buffers, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    target_fit(TargetFitRequest(model.path, _target("8 GB laptop CPU"), ("F16",), (CPU,)))

    def no_context(*a: object, **k: object) -> None:
        raise AssertionError("measured again")

    monkeypatch.setattr(targets_module, "measure_buffers", no_context)
    fit = target_fit(TargetFitRequest(model.path, _target("8 GB laptop CPU"), ("F16",), (CPU,)))
    assert fit.buffers == buffers
    # another backend is estimated from the same CPU measurement
    est = target_fit(TargetFitRequest(model.path, _target("24 GB RTX"), ("F16",), (CPU,)))
    assert not est.measured and "estimate" in est.note and est.buffers == buffers


def test_budget_decides_the_fit(model: ModelInfo, buffers) -> None:  # type: ignore[no-untyped-def]
    q4km = make_plan(PlanRequest(model.path, preset="Q4_K_M")).plan.size_bytes
    need = q4km + buffers.total
    tight = TargetSpec("tight", "CPU", 0, need, False, CTX)
    rows = {
        r.label: r for r in target_fit(TargetFitRequest(model.path, tight, devices=(CPU,))).rows
    }
    assert rows["Q4_K_M"].fits and rows["Q4_K_M"].total == need
    assert not rows["F16"].fits and not rows["Q8_0"].fits and rows["Q2_K"].fits
    short = TargetSpec("tight", "CPU", 0, need - 1, False, CTX)
    fit = target_fit(TargetFitRequest(model.path, short, ("Q4_K_M",), (CPU,)))
    assert not fit.rows[0].fits


def test_partial_offload_splits_both_budgets(model: ModelInfo, buffers) -> None:  # type: ignore[no-untyped-def]
    """10 GPU layers on a 30-layer model: the output and layers 21..29 on the GPU; the tied
    output is a copy of token_embd there; KV by layer share (an estimate: no CUDA here)."""
    t = _target("24 GB RTX", gpu_layers=10)
    fit = target_fit(TargetFitRequest(model.path, t, ("F16",), (CPU,)))
    assert not fit.measured and fit.offloaded_layers == 9 and fit.output_on_device
    assert (fit.device_budget, fit.host_budget) == (24 * GIB, 32 * GIB)
    r = fit.rows[0]
    size = {x.name: x.n_bytes for x in model.tensors}
    gpu = [n for n in size if n.startswith(tuple(f"blk.{i}." for i in range(21, 30)))]
    outside = [n for n in size if not n.startswith("blk.")]
    assert model.tied_embeddings and "output.weight" not in size
    embd = size["token_embd.weight"]
    assert (
        r.weights_device
        == sum(size[n] for n in gpu)
        + sum(size[n] for n in outside if n != "token_embd.weight")
        + embd
    )
    assert r.weights_host == model.tensor_data_bytes - r.weights_device + embd
    assert r.kv_device == round(buffers.kv_cache * 9 / 30)
    assert r.kv_device + r.kv_host == buffers.kv_cache
    assert r.compute_device == buffers.compute
    assert r.compute_host == buffers.compute + buffers.output  # the host runs layers 0..20
    full = target_fit(TargetFitRequest(model.path, _target("24 GB RTX"), ("F16",), (CPU,)))
    f = full.rows[0]
    assert f.weights_host == embd and f.kv_device == buffers.kv_cache
    assert (f.compute_device, f.compute_host) == (buffers.compute, buffers.output)
    none = target_fit(
        TargetFitRequest(model.path, _target("24 GB RTX", gpu_layers=0), ("F16",), (CPU,))
    )
    n = none.rows[0]
    assert n.device_total == 0 and n.weights_host == model.tensor_data_bytes


def test_unified_memory_is_one_budget(model: ModelInfo, buffers) -> None:  # type: ignore[no-untyped-def]
    fit = target_fit(
        TargetFitRequest(model.path, _target("16 GB Apple M-series"), ("F16",), (CPU,))
    )
    assert not fit.measured and "unified" in fit.note
    assert (fit.device_budget, fit.host_budget) == (16 * GIB, 0)
    r = fit.rows[0]
    assert r.host_total == 0 and r.weights_device == model.tensor_data_bytes
    assert r.total == model.tensor_data_bytes + buffers.total and r.fits


@pytest.mark.parametrize("case", ["preset", "context", "model", "target"])
def test_bad_requests(case: str, model: ModelInfo, tmp_path: Path) -> None:
    req = TargetFitRequest(model.path, _target("8 GB laptop CPU"), devices=(CPU,))
    err: type[Exception]
    if case == "preset":
        req, err, match = (
            TargetFitRequest(model.path, req.target, ("Q4_K_X",), (CPU,)),
            PlanError,
            "Q4_K_X",
        )
    elif case == "context":
        t = TargetSpec("x", "CPU", 0, GIB, False, context=8)
        req, err, match = TargetFitRequest(model.path, t, devices=(CPU,)), InputError, "'context'"
    elif case == "model":
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"GGUF")
        req, err, match = (
            TargetFitRequest(bad, req.target, devices=(CPU,)),
            ModelFileError,
            "bad.gguf",
        )
    else:
        not_a_target: Any = "24 GB"
        req = TargetFitRequest(model.path, not_a_target, devices=(CPU,))
        err, match = InputError, "TargetSpec"
    with pytest.raises(err, match=match):
        target_fit(req)


def test_cancel_while_measuring(model: ModelInfo, folders: Path) -> None:
    cancel = CancelToken()

    def sink(p: Progress) -> None:
        if p.phase is Phase.LOAD:
            cancel.cancel()

    t = TargetSpec("x", "CPU", 0, GIB, False, context=256)
    with pytest.raises(Cancelled):
        target_fit(TargetFitRequest(model.path, t, devices=(CPU,)), progress=sink, cancel=cancel)
    assert not list((folders / "cache" / "buffers").glob("*-c256-*"))
