"""The job API of the model-file and plan stages: upcast, hash_model, make_plan, quantize.

Cancel after the first event of each phase, progress cadence, cancel on entry, and a table of
bad inputs per job (each -> its project error, naming the file or tensor).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.jobs.errors import (
    Cancelled,
    ImatrixError,
    InputError,
    LwqError,
    ModelFileError,
    OutputError,
    PlanError,
)
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.modelfile import (
    HashRequest,
    UpcastRequest,
    hash_model,
    inventory,
    open_model,
    per_tensor_hashes,
    tensor_data_hash,
    upcast,
)
from lwq_app.core.plan import (
    LayerSummary,
    PlanRequest,
    QuantizeRequest,
    make_plan,
    plan_from_preset,
    quantize,
)


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], set[str]]]:
    """Fresh LWQ_DATA_DIR and LWQ_CACHE_DIR; the function lists every file in them."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    cache.mkdir()
    monkeypatch.setenv("LWQ_DATA_DIR", str(data))
    monkeypatch.setenv("LWQ_CACHE_DIR", str(cache))

    def files() -> set[str]:
        return {str(p) for d in (data, cache) for p in d.rglob("*")}

    yield files


def _cancel_at_first(phase: Phase) -> tuple[CancelToken, Callable[[Progress], None], list[float]]:
    """A token cancelled at the first event of ``phase``; the list gets the time it was."""
    token = CancelToken()
    at: list[float] = []

    def on_progress(p: Progress) -> None:
        if p.phase == phase and not at:
            at.append(time.monotonic())
            token.cancel()

    return token, on_progress, at


def _cadence(events: list[tuple[float, Progress]]) -> None:
    """Every phase of >= 2 s: >= 3 intermediate events and no gap over 2 s."""
    for phase in {p.phase for _, p in events}:
        ts = [t for t, p in events if p.phase == phase]
        if ts[-1] - ts[0] < 2:
            continue
        inner = [p for _, p in events if p.phase == phase and 0 < p.done < p.total]
        assert len(inner) >= 3, phase
        assert max(b - a for a, b in itertools.pairwise(ts)) <= 2.0, phase


# --- upcast -----------------------------------------------------------------------------------


def test_upcast_cancel_after_first_event(
    smollm2_q4_1: Path, tmp_path: Path, stores: Callable[[], set[str]]
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = stores()
    token, on_progress, at = _cancel_at_first(Phase.UPCAST)
    with pytest.raises(Cancelled):
        upcast(UpcastRequest(smollm2_q4_1, out_dir / "x.gguf"), progress=on_progress, cancel=token)
    assert at and time.monotonic() - at[0] < 1.0
    assert list(out_dir.iterdir()) == []
    assert stores() == before


@pytest.mark.slow
def test_upcast_progress_and_bytes(smollm2_q4_1: Path, smollm2_f16: Path, tmp_path: Path) -> None:
    """One event per tensor (and within large ones), no gap over 2 s; the file is the same,
    byte for byte, as the fixture's."""
    events: list[tuple[float, Progress]] = []
    r = upcast(
        UpcastRequest(smollm2_q4_1, tmp_path / "f16.gguf"),
        progress=lambda p: events.append((time.monotonic(), p)),
    )
    assert (r.n_tensors, r.n_converted) == (272, 211)
    assert {p.phase for _, p in events} == {Phase.UPCAST}
    assert [p.done for _, p in events] == sorted(p.done for _, p in events)
    assert events[-1][1].done == events[-1][1].total == 272
    assert any(not float(p.done).is_integer() for _, p in events)  # token_embd in row blocks
    _cadence(events)
    assert r.output.read_bytes() == smollm2_f16.read_bytes()


# --- hash_model -------------------------------------------------------------------------------


def test_hash_model_progress_cache_and_cancel(
    smollm2: Path, manifest: dict, stores: Callable[[], set[str]]
) -> None:
    want = manifest["fixtures"]["smollm2_offgrid_f16_tensor_data_sha256"]
    before = stores()
    token, on_progress, at = _cancel_at_first(Phase.HASH)
    with pytest.raises(Cancelled):
        hash_model(HashRequest(smollm2), progress=on_progress, cancel=token)
    assert at and time.monotonic() - at[0] < 1.0
    assert stores() == before  # a cancelled hash leaves no index entry

    events: list[tuple[float, Progress]] = []
    r = hash_model(HashRequest(smollm2), progress=lambda p: events.append((time.monotonic(), p)))
    assert (r.sha256, r.cached) == (want, False)
    assert r.n_bytes == open_model(smollm2).tensor_data_bytes
    dones = [p.done for _, p in events]
    assert dones == sorted(dones) and dones[-1] == r.n_bytes
    assert sum(0 < d < r.n_bytes for d in dones) >= 3
    _cadence(events)
    again = hash_model(HashRequest(smollm2))
    assert (again.sha256, again.cached, again.n_bytes) == (want, True, r.n_bytes)


def test_tensor_hashes_are_one_implementation(synthetic_model: Path) -> None:
    m = open_model(synthetic_model)
    assert inventory.per_tensor_hashes is per_tensor_hashes  # still importable from inventory
    assert tensor_data_hash(synthetic_model) == tensor_data_hash(m) == m.tensor_data_hash()
    assert list(per_tensor_hashes(synthetic_model)) == [t.name for t in m.tensors]


# --- make_plan --------------------------------------------------------------------------------


def test_make_plan_result_is_typed_and_renders_the_cli_json(tmp_path: Path) -> None:
    model = fixtures.synthetic("gqa4-untied")
    r = make_plan(PlanRequest(model, preset="Q4_K_M", changes=(("blk.0.attn_q.weight", "Q8_0"),)))
    assert r.plan["blk.0.attn_q.weight"].effective == "Q8_0" and r.plan.preset is None
    assert all(isinstance(x, LayerSummary) for x in r.layers)
    assert isinstance(r.layers[0].types, tuple)
    d = r.to_json()
    assert list(d["layers"][0]) == ["layer", "params", "bytes", "types", "fallbacks", "bpw"]
    assert isinstance(d["layers"][0]["types"], dict)
    assert [f["tensor"] for f in d["fallbacks"]] == [f.tensor for f in r.fallbacks]
    assert json.dumps(d)  # plain JSON all the way
    p = tmp_path / "p.json"
    r.plan.save(p)
    back = make_plan(PlanRequest(model, plan_file=p))
    assert back.plan.requested_types() == r.plan.requested_types()


def test_make_plan_checks_cancel_on_entry() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        make_plan(PlanRequest(fixtures.synthetic("gqa4-untied"), preset="Q4_K_M"), cancel=token)


# --- quantize ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("phase", [Phase.QUANTIZE, Phase.HASH])
def test_quantize_cancel_after_first_event_of_each_phase(
    phase: Phase, tmp_path: Path, stores: Callable[[], set[str]]
) -> None:
    model = fixtures.synthetic("gqa4-untied")
    plan = plan_from_preset(open_model(model), "Q8_0")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = stores()
    token, on_progress, at = _cancel_at_first(phase)
    request = QuantizeRequest(model, plan, out_dir / "q.gguf", threads=2, hash_output=True)
    with pytest.raises(Cancelled):
        quantize(request, progress=on_progress, cancel=token)
    assert at and time.monotonic() - at[0] < 1.0
    assert list(out_dir.iterdir()) == []
    assert stores() == before


# --- bad inputs -------------------------------------------------------------------------------


@pytest.fixture
def bad(tmp_path: Path) -> dict[str, Path]:
    """Broken model files and another model's plan and imatrix."""
    from lwq_app.core.modelfile.imatrix_file import Imatrix, ImatrixEntry, write_gguf

    src = fixtures.synthetic("gqa4-untied")
    text = tmp_path / "notes.gguf"
    text.write_text("hello, I am text\n")
    cut = tmp_path / "cut.gguf"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    other = open_model(fixtures.synthetic("phi3-qkv"))
    other_plan = tmp_path / "phi3.plan.json"
    plan_from_preset(other, "Q4_K_M").save(other_plan)
    import numpy as np

    # another model's imatrix: the same tensor names with other row sizes
    entries = {
        t.name: ImatrixEntry(t.name, np.ones((t.n_experts, 2 * t.ne0), np.float32),
                             np.full(t.n_experts, 1.0, np.float32))
        for t in open_model(src).tensors
        if t.quantizable
    }  # fmt: skip
    other_imatrix = tmp_path / "phi3.imatrix.gguf"
    write_gguf(Imatrix(entries, ("ones",), 1, 512), other_imatrix)
    return {
        "model": src,
        "missing": tmp_path / "absent.gguf",
        "text": text,
        "cut": cut,
        "other_plan": other_plan,
        "other_imatrix": other_imatrix,
        "out": tmp_path / "out" / "x.gguf",
        "nodir": tmp_path / "no" / "such" / "x.gguf",
    }


def _run(job: str, kw: dict[str, object], bad: dict[str, Path]) -> None:
    def sub(v: object) -> object:
        return bad[v[1:]] if isinstance(v, str) and v.startswith("@") else v

    args = {k: sub(v) for k, v in kw.items()}
    if job == "upcast":
        upcast(UpcastRequest(**args))  # type: ignore[arg-type]
    elif job == "hash":
        hash_model(HashRequest(**args))  # type: ignore[arg-type]
    elif job == "plan":
        make_plan(PlanRequest(**args))  # type: ignore[arg-type]
    else:
        model = bad["model"]
        plan = args.pop("plan", None) or plan_from_preset(open_model(model), "Q4_K_M")
        args.setdefault("model", model)
        args.setdefault("output", bad["out"])
        quantize(QuantizeRequest(plan=plan, **args))  # type: ignore[arg-type]


BAD_INPUTS = [
    ("upcast", {"model": "@missing", "output": "@out"}, ModelFileError, r"absent\.gguf: no such file"),
    ("upcast", {"model": "@text", "output": "@out"}, ModelFileError, r"notes\.gguf: not a GGUF"),
    ("upcast", {"model": "@cut", "output": "@out"}, ModelFileError, r"cut\.gguf: .*truncated"),
    ("upcast", {"model": "@model", "output": "@out", "type": "Q9"}, InputError, "not Q9"),
    ("upcast", {"model": "@model", "output": "@nodir"}, OutputError, r"x\.gguf: folder .* does not exist"),
    ("upcast", {"model": "@model", "output": "@model"}, InputError, "overwrite the input"),
    ("hash", {"model": "@missing"}, ModelFileError, r"absent\.gguf: no such file"),
    ("hash", {"model": "@text"}, ModelFileError, r"notes\.gguf: not a GGUF"),
    ("hash", {"model": "@cut"}, ModelFileError, r"cut\.gguf: .*truncated"),
    ("plan", {"model": "@missing", "preset": "Q4_K_M"}, ModelFileError, r"absent\.gguf: no such file"),
    ("plan", {"model": "@text", "preset": "Q4_K_M"}, ModelFileError, r"notes\.gguf: not a GGUF"),
    ("plan", {"model": "@cut", "preset": "Q4_K_M"}, ModelFileError, r"cut\.gguf: .*truncated"),
    ("plan", {"model": "@model", "plan_file": "@other_plan"}, PlanError, r"phi3\.plan\.json: .*architecture 'phi3'"),
    ("plan", {"model": "@model", "plan_file": "@missing"}, PlanError, r"absent\.gguf: no such plan file"),
    ("plan", {"model": "@model", "preset": "Q4_K_M", "changes": (("blk.99.attn_q.weight", "Q8_0"),)},
     PlanError, r"no tensor 'blk\.99\.attn_q\.weight'"),
    ("plan", {"model": "@model", "preset": "Q4_K_M", "changes": (("blk.0.attn_q.weight", "Q9_K"),)},
     PlanError, r"blk\.0\.attn_q\.weight: unknown tensor type 'Q9_K'"),
    ("plan", {"model": "@model", "preset": "Q9_K"}, PlanError, "unknown preset 'Q9_K'"),
    ("plan", {"model": "@model", "preset": "Q4_K_M", "imatrix": "@other_imatrix"}, ImatrixError,
     r"blk\.0\.\w+\.weight"),
    ("plan", {"model": "@model"}, InputError, "exactly one of a preset or a plan file"),
    ("quantize", {"model": "@missing"}, ModelFileError, r"absent\.gguf: no such file"),
    ("quantize", {"model": "@text"}, ModelFileError, r"notes\.gguf: not a GGUF"),
    ("quantize", {"model": "@cut"}, ModelFileError, r"cut\.gguf: .*truncated"),
    ("quantize", {"imatrix": "@other_imatrix"}, ImatrixError, r"blk\.0\.\w+\.weight"),
    ("quantize", {"imatrix": "@missing"}, ImatrixError, r"absent\.gguf"),
    ("quantize", {"base_ftype": "Q9_K"}, InputError, "unknown preset 'Q9_K'"),
    ("quantize", {"output": "@nodir"}, OutputError, r"x\.gguf: folder .* does not exist"),
]  # fmt: skip


@pytest.mark.parametrize(("job", "kw", "error", "match"), BAD_INPUTS)
def test_bad_inputs(
    job: str,
    kw: dict[str, object],
    error: type[LwqError],
    match: str,
    bad: dict[str, Path],
    stores: Callable[[], set[str]],
) -> None:
    bad["out"].parent.mkdir(exist_ok=True)
    before = stores()
    with pytest.raises(error, match=match):
        _run(job, kw, bad)
    assert list(bad["out"].parent.iterdir()) == []
    assert stores() == before


def test_quantize_refuses_another_models_plan(bad: dict[str, Path]) -> None:
    other = plan_from_preset(open_model(fixtures.synthetic("phi3-qkv")), "Q4_K_M")
    bad["out"].parent.mkdir()
    with pytest.raises(PlanError, match=r"plan is for another model .*gqa4-untied"):
        quantize(QuantizeRequest(bad["model"], other, bad["out"]))
    assert not os.path.exists(bad["out"])


# --- recipe -----------------------------------------------------------------------------------


def test_export_recipe_writes_the_types_file_and_the_command(smollm2: Path, tmp_path: Path) -> None:
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.plan import RecipeRequest, export_recipe, make_recipe, plan_from_preset

    plan = plan_from_preset(open_model(smollm2), "Q4_K_M")
    plan_file = tmp_path / "p.json"
    plan.save(plan_file)
    r = export_recipe(RecipeRequest(smollm2, plan_file, threads=2))
    want = make_recipe(plan)
    assert r.tensor_type_file == tmp_path / "p.tensor-types.txt"
    assert r.tensor_type_file.read_text() == want.tensor_types
    assert r.n_overrides == want.n_overrides and r.base_ftype == "Q4_K_M"
    out = str(smollm2.with_name(smollm2.stem + "-lwq.gguf"))
    assert list(r.command) == want.command(str(smollm2), out, str(r.tensor_type_file), None, 2)


def test_export_recipe_cancelled_or_refused_writes_nothing(
    smollm2: Path, synthetic_model: Path, tmp_path: Path
) -> None:
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.plan import RecipeRequest, export_recipe, plan_from_preset

    plan_file = tmp_path / "p.json"
    plan_from_preset(open_model(smollm2), "Q4_K_M").save(plan_file)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        export_recipe(RecipeRequest(smollm2, plan_file), cancel=token)
    with pytest.raises(PlanError, match=r"p\.json"):  # a plan for another model
        export_recipe(RecipeRequest(synthetic_model, plan_file))
    with pytest.raises(InputError, match="--base-ftype: unknown preset 'BOGUS'"):
        export_recipe(RecipeRequest(smollm2, plan_file, base_ftype="BOGUS"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]
