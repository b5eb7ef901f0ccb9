"""End-to-end quantization of the real SmolLM2 through llama.cpp, checked against goldens."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from multiprocessing import resource_tracker
from pathlib import Path

import numpy as np
import psutil
import pytest

import fixtures
from lwq_app.core.jobs.atomic import check_free_space
from lwq_app.core.jobs.errors import Cancelled, ImatrixError, InputError, OutputError, PlanError
from lwq_app.core.jobs.progress import CancelToken, Progress
from lwq_app.core.modelfile.hashing import per_tensor_hashes
from lwq_app.core.modelfile.imatrix_file import Imatrix, read_imatrix, write_gguf
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.plan.quantize import KV_PLAN_HASH, QuantizeRequest, quantize
from lwq_app.core.plan.recipe import make_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def golden_quant(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "quantize.json").read_text())


def _kv(path: Path) -> dict:
    from gguf import GGUFReader

    r = GGUFReader(path)
    return {
        k: f.contents()
        for k, f in r.fields.items()
        if k.startswith(("quantize.", "lwq.", "general.file_type"))
    }


@pytest.mark.parametrize("preset", ["Q4_K_M", "Q3_K_M"])
def test_preset_plan_is_byte_identical_to_llama_quantize(
    preset: str, smollm2: Path, golden_imatrix: Path, golden_quant: dict, tmp_path: Path
) -> None:
    """Different base ftype (Q8_0) + pure + one anchored override per tensor == native preset."""
    model = open_model(smollm2)
    plan = plan_from_preset(model, preset, with_imatrix=True)
    out = tmp_path / f"lwq-{preset}.gguf"
    events: list[Progress] = []
    times: list[float] = []

    def on_progress(p: Progress) -> None:
        events.append(p)
        times.append(time.monotonic())

    r = quantize(
        QuantizeRequest(
            smollm2,
            plan,
            out,
            imatrix=golden_imatrix,
            base_ftype="Q8_0",
            threads=2,
            hash_output=True,
        ),
        progress=on_progress,
    )
    assert r.n_overrides == sum(t.quantizable for t in model.tensors) == 211
    g = golden_quant[preset]
    written = open_model(out)
    assert {t.name: t.type for t in written.tensors} == g["types"]
    assert per_tensor_hashes(written) == g["sha256"]
    assert r.tensor_data_sha256 == g["tensor_data_sha256"]
    assert written.tensor_data_bytes == plan.size_bytes == g["tensor_data_bytes"] == r.tensor_bytes
    # the recipe lwq exports rebuilt the same bytes with the native tool (make_golden.py)
    assert g["recipe_tensor_data_sha256"] == g["tensor_data_sha256"]
    # progress: one event per tensor from llama.cpp's log, in order
    names = [e.item for e in events if e.phase.value == "quantize" and e.done < e.total][1:]
    assert len(names) == 272 and names[0] == "output_norm.weight"
    # one monotone overall 0 -> 1 over quantize, verify, hash, write; each phase of >= 2 s
    # has >= 3 intermediate events and no gap over 2 s
    overall = [e.overall for e in events]
    assert all(x is not None for x in overall)
    assert overall == sorted(overall) and overall[-1] == 1.0  # type: ignore[type-var]
    order = list(dict.fromkeys(e.phase.value for e in events))
    assert order == ["quantize", "verify", "hash", "write"]
    for phase in ("quantize", "hash"):
        ts = [t for t, e in zip(times, events, strict=True) if e.phase.value == phase]
        if ts[-1] - ts[0] >= 2:
            inner = [e for e in events if e.phase.value == phase and 0 < e.done < e.total]
            assert len(inner) >= 3, phase
            assert max(b - a for a, b in itertools.pairwise(ts)) <= 2.0, phase
    # metadata: quantize.imatrix.* like llama-quantize, and the plan hash tying the sidecar
    kv = _kv(out)
    im = read_imatrix(golden_imatrix)
    assert kv["quantize.imatrix.entries_count"] == len(im.entries)
    assert kv["quantize.imatrix.chunks_count"] == 16
    assert kv["quantize.imatrix.dataset"] == "resources/calibration/lwq-calibration-v1.txt"
    side = json.loads(r.sidecar.read_text())
    assert kv[KV_PLAN_HASH] == side["plan_sha256"] == plan.content_hash()
    assert side["plan"]["tensors"] == plan.requested_types()
    assert side["tensor_data_sha256"] == r.tensor_data_sha256
    assert kv["general.file_type"] == 7  # the base ftype given (Q8_0), not the preset
    assert make_recipe(plan, "Q8_0").n_overrides == r.n_overrides


def test_custom_plan_writes_exact_types_and_keeps_quality(
    smollm2: Path,
    golden_imatrix: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lwq_app.core.engine import greedy_completion
    from lwq_app.core.evaluate.perplexity import perplexity

    model = open_model(smollm2)
    base = plan_from_preset(model, "Q4_K_M")
    changes = {}
    for t in model.tensors:
        if not t.quantizable:
            continue
        layer = t.layer
        if t.kind == "ffn_down" and layer is not None and layer <= 3:
            changes[t.name] = "Q8_0"
        elif t.kind == "attn_q" and layer is not None and layer % 2 == 1:
            changes[t.name] = "Q3_K"
        else:
            changes[t.name] = "Q4_K"
    plan = base.with_types(changes)
    warnings = plan.warnings()
    assert any(w.tensor == "blk.1.attn_q.weight" and "Q4_0" in w.message for w in warnings)
    out = tmp_path / "custom.gguf"
    r = quantize(QuantizeRequest(smollm2, plan, out, imatrix=golden_imatrix, threads=2))
    written = {t.name: t.type for t in open_model(out).tensors}
    assert written == plan.effective_types()
    assert written["blk.2.ffn_down.weight"] == "Q8_0"
    assert written["blk.5.ffn_down.weight"] == "Q4_K"  # 1536 columns: Q4_K fits
    assert written["blk.1.attn_q.weight"] == "Q4_0"  # Q3_K fell back (576 columns)
    assert written["blk.2.attn_q.weight"] == "Q5_0"  # Q4_K fell back
    assert r.tensor_bytes == plan.size_bytes
    text = fixtures.WIKI
    ppl_q = perplexity(out, text, n_ctx=256, n_chunks=4, threads=2).ppl
    ppl_f = perplexity(smollm2, text, n_ctx=256, n_chunks=4, threads=2).ppl
    completion = greedy_completion(str(out), "The capital of France is", 16, threads=2)
    with capsys.disabled():  # shown in the test log even when the test passes
        print(
            f"\n[custom plan] PPL F16 {ppl_f:.3f}, custom {ppl_q:.3f} ({ppl_q / ppl_f:.3f}x); "
            f"greedy completion: 'The capital of France is{completion}'"
        )
    assert ppl_f < ppl_q < ppl_f * 1.15
    assert len(completion.strip()) > 0


def test_cancel_after_first_progress_leaves_nothing(smollm2: Path, tmp_path: Path) -> None:
    model = open_model(smollm2)
    plan = plan_from_preset(model, "Q4_K_M")
    token = CancelToken()
    seen: list[Progress] = []
    out = tmp_path / "cancelled.gguf"
    me = psutil.Process()
    # multiprocessing's resource tracker lives as long as this process, by
    # design; start it now so that only the job's own children are judged.
    resource_tracker.ensure_running()
    before = {c.pid for c in me.children(recursive=True)}

    def on_progress(p: Progress) -> None:
        seen.append(p)
        if p.item.endswith(".weight"):  # first event from llama.cpp itself
            token.cancel()

    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        quantize(QuantizeRequest(smollm2, plan, out, threads=2), progress=on_progress, cancel=token)
    elapsed_after_cancel = time.monotonic() - t0
    assert any(p.item.endswith(".weight") for p in seen)
    assert not any(p.phase.value == "write" for p in seen)  # never reached the end
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        alive = [
            c
            for c in me.children(recursive=True)
            if c.pid not in before and c.is_running() and c.status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            break
        time.sleep(0.02)
    assert not alive, f"child still alive 1 s after cancel: {alive}"
    assert list(tmp_path.iterdir()) == [], "cancel left files behind"
    print(f"\ncancelled after {elapsed_after_cancel:.2f}s")


def test_cancel_from_another_thread(smollm2: Path, tmp_path: Path) -> None:
    model = open_model(smollm2)
    plan = plan_from_preset(model, "Q8_0")
    token = CancelToken()
    started, cancelled = threading.Event(), threading.Event()

    def canceller() -> None:
        started.wait(60)
        token.cancel()
        cancelled.set()

    def on_progress(p: Progress) -> None:
        # Hold the worker at its first tensor until the other thread has
        # cancelled: a fixed timer raced a fast machine that finished first.
        if p.item.endswith(".weight") and not started.is_set():
            started.set()
            assert cancelled.wait(60)

    thread = threading.Thread(target=canceller)
    thread.start()
    with pytest.raises(Cancelled):
        quantize(
            QuantizeRequest(smollm2, plan, tmp_path / "x.gguf", threads=1),
            progress=on_progress,
            cancel=token,
        )
    thread.join()
    assert started.is_set()
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(
    smollm2: Path, smollm2_q4_1: Path, golden_imatrix: Path, tmp_path: Path
) -> None:
    model = open_model(smollm2)
    plan = plan_from_preset(model, "Q4_K_M")
    out = tmp_path / "out.gguf"
    low = plan.with_types({"blk.3.ffn_down.weight": "IQ2_XXS"})
    with pytest.raises(
        PlanError, match=r"IQ2_XXS of tensor blk\.3\.ffn_down\.weight requires an importance matrix"
    ):
        quantize(QuantizeRequest(smollm2, low, out))
    # an imatrix lacking that tensor
    im = read_imatrix(golden_imatrix)
    partial = Imatrix(
        {k: v for k, v in im.entries.items() if k != "blk.3.ffn_down.weight"},
        im.datasets,
        im.chunk_count,
        im.chunk_size,
    )
    write_gguf(partial, tmp_path / "partial.imatrix.gguf")
    with pytest.raises(
        ImatrixError, match=r"no importance data for tensor\(s\) blk\.3\.ffn_down\.weight"
    ):
        quantize(QuantizeRequest(smollm2, low, out, imatrix=tmp_path / "partial.imatrix.gguf"))
    # an imatrix of the wrong size (another model)
    sums = {k: v for k, v in im.entries.items()}
    e = sums["blk.0.attn_q.weight"]
    sums["blk.0.attn_q.weight"] = type(e)(e.name, np.ones((1, 256), np.float32), e.counts)
    write_gguf(Imatrix(sums, im.datasets, 16, 512), tmp_path / "wrong.imatrix.gguf")
    with pytest.raises(ImatrixError, match=r"blk\.0\.attn_q\.weight has 256 values"):
        quantize(QuantizeRequest(smollm2, plan, out, imatrix=tmp_path / "wrong.imatrix.gguf"))
    # a plan for another model
    from fixtures import synthetic

    other = plan_from_preset(open_model(synthetic("gqa4-untied")), "Q4_K_M")
    with pytest.raises(PlanError, match="another model"):
        quantize(QuantizeRequest(smollm2, other, out))
    # requantizing the packaged Q4_1 file (same tensors, already quantized)
    with pytest.raises(InputError, match=r"already quantized \(Q4_1\).*lwq upcast"):
        quantize(QuantizeRequest(smollm2_q4_1, plan, out))
    # unwritable / impossible outputs
    with pytest.raises(OutputError, match="does not exist"):
        quantize(QuantizeRequest(smollm2, plan, tmp_path / "no" / "such" / "dir.gguf"))
    with pytest.raises(OutputError, match="cannot write"):
        quantize(QuantizeRequest(smollm2, plan, Path("/sys/lwq-test.gguf")))
    with pytest.raises(OutputError, match="overwrite the input"):
        quantize(QuantizeRequest(smollm2, plan, smollm2))
    with pytest.raises(OutputError, match="not enough disk space"):
        check_free_space(out, 10**18)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "partial.imatrix.gguf",
        "wrong.imatrix.gguf",
    ]
    assert not os.path.exists(out)
