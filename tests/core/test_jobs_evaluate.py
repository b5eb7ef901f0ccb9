"""The evaluation jobs' front door on SmolLM2: ``evaluate``, ``run_tasks``, ``bench``,
``measure_memory_fit`` and ``list_devices`` — cancel in every phase, progress, bad inputs —
and the typed results store."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fixtures
from lwq_app.core.evaluate import (
    BenchRequest,
    BenchResult,
    DevicesRequest,
    DeviceType,
    EvalRequest,
    KldResult,
    MemoryFitRequest,
    PerplexityResult,
    TaskKind,
    TasksRequest,
    bench,
    evaluate,
    list_devices,
    measure_memory_fit,
    run_tasks,
    write_multiple_choice,
)
from lwq_app.core.jobs.errors import Cancelled, InputError, ModelFileError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.results import load_results, record_bench, record_eval, record_tasks

#: one chunk per decode, so each chunk reports (the default packs 16 chunks of 128 in one);
#: one thread: on a busy 2-core runner two spinning OpenMP threads per job are 3x slower
SMALL = {"n_ctx": 128, "n_chunks": 4, "n_seq": 1, "threads": 1}


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty lwq cache and data folders (so the base's hash is really taken) and a text."""
    folders = {"cache": tmp_path / "cache", "data": tmp_path / "data", "work": tmp_path / "work"}
    for f in folders.values():
        f.mkdir()
    monkeypatch.setenv("LWQ_CACHE_DIR", str(folders["cache"]))
    monkeypatch.setenv("LWQ_DATA_DIR", str(folders["data"]))
    text = folders["work"] / "wiki.txt"
    text.write_bytes(fixtures.WIKI.read_bytes()[:60_000])
    return folders


def files(*folders: Path) -> set[Path]:
    return {p for f in folders for p in f.rglob("*") if p.is_file()}


def temp_files(*folders: Path) -> list[Path]:
    return [p for p in files(*folders) if ".lwq-tmp" in p.name or p.name.endswith(".incomplete")]


Job = Callable[..., Any]


def recorded(job: Job, request: Any) -> tuple[Any, list[tuple[float, Progress]]]:
    events: list[tuple[float, Progress]] = []
    result = job(request, progress=lambda p: events.append((time.monotonic(), p)))
    return result, events


def check_progress(events: list[tuple[float, Progress]]) -> None:
    """Every phase of >= 2 s: >= 3 intermediate events, no gap over 4 s; ``overall`` (where
    set) never goes back. Events come once per chunk (~1 s of F16 SmolLM2 on 2 threads); a
    loaded 2-core CI runner once took 2.2 s for one, so the bound is twice that."""
    runs = [list(g) for _, g in itertools.groupby(events, key=lambda e: e[1].phase)]
    for i, evs in enumerate(runs):  # each run of consecutive events of one phase, which
        phase = evs[0][1].phase  # lasts until the next phase's first event
        times = [t for t, _ in evs] + ([runs[i + 1][0][0]] if i + 1 < len(runs) else [])
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps, default=0) <= 4.0, (phase, gaps)
        if times[-1] - times[0] >= 2.0:
            assert len([p for _, p in evs if 0 < p.done < p.total]) >= 3, phase
    overall = [p.overall for _, p in events if p.overall is not None]
    assert overall == sorted(overall)
    for _, p in events:
        assert "ETA" not in p.item and "s/chunk" not in p.item  # labels only


def cancel_in(job: Job, request: Any, phase: Phase, *watched: Path) -> None:
    """Cancel at the first event of ``phase``: ``Cancelled`` within 1 s, no partial file."""
    token = CancelToken()
    when: list[float] = []

    def on_progress(p: Progress) -> None:
        if p.phase is phase and not token.cancelled:
            when.append(time.monotonic())
            token.cancel()

    with pytest.raises(Cancelled):
        job(request, progress=on_progress, cancel=token)
    assert when, f"no {phase.value} event"
    assert time.monotonic() - when[0] < 1.0
    assert temp_files(*watched) == []


# --- evaluate ----------------------------------------------------------------------------------


def test_evaluate_builds_the_base_cache_with_one_monotone_progress(
    smollm2: Path, caches: dict[str, Path]
) -> None:
    text = caches["work"] / "wiki.txt"
    req = EvalRequest(smollm2, text, base=smollm2, cache_dir=caches["cache"] / "bl", **SMALL)
    r, events = recorded(evaluate, req)
    assert isinstance(r, KldResult) and r.stats.count == 4 * 63 and r.base_seconds > 0
    assert r.stats.kld == pytest.approx(0, abs=1e-6)
    phases = [p.phase for _, p in events]
    order = [ph for ph, _ in itertools.groupby(phases)]
    assert order == [Phase.HASH, Phase.LOAD, Phase.BASE, Phase.LOAD, Phase.EVAL], order
    assert events[-1][1].overall == pytest.approx(1.0)
    assert [p.item for _, p in events if p.phase is Phase.EVAL][-1] == "chunk 4"
    check_progress(events)
    assert json.loads(json.dumps(r.to_json()))["stats"]["kld_dist"]["percentiles"]["99.0"] >= 0
    # the second time the cache is reused: no BASE phase, no base seconds
    again, events = recorded(evaluate, req)
    assert isinstance(again, KldResult) and again.base_seconds == 0.0
    assert Phase.BASE not in {p.phase for _, p in events}


@pytest.mark.parametrize("phase", [Phase.HASH, Phase.LOAD, Phase.BASE, Phase.EVAL])
def test_evaluate_cancels_in_every_phase(
    phase: Phase, smollm2: Path, caches: dict[str, Path]
) -> None:
    """Cancelled in HASH: nothing new anywhere; later, only what finished stays: the hash
    index (after HASH) and the base-logits cache (after BASE), for the next run."""
    text = caches["work"] / "wiki.txt"
    before = files(*caches.values())
    req = EvalRequest(smollm2, text, base=smollm2, cache_dir=caches["cache"] / "bl", **SMALL)
    cancel_in(evaluate, req, phase, *caches.values())
    new = {p.name for p in files(*caches.values()) - before}
    kept = {Phase.HASH: 0, Phase.LOAD: 1, Phase.BASE: 1, Phase.EVAL: 2}[phase]
    assert len(new) == kept, new
    assert kept < 1 or "model-hashes.json" in new
    assert kept < 2 or any(n.endswith(".npz") for n in new)


def test_perplexity_alone_is_one_phase(smollm2: Path, caches: dict[str, Path]) -> None:
    r, events = recorded(evaluate, EvalRequest(smollm2, caches["work"] / "wiki.txt", **SMALL))
    assert isinstance(r, PerplexityResult) and r.n_chunks == 4
    assert {p.phase for _, p in events} == {Phase.LOAD, Phase.EVAL}
    check_progress(events)


def _truncated(tmp_path: Path) -> Path:
    p = tmp_path / "cut.gguf"
    with open(fixtures.smollm2_offgrid_f16(), "rb") as f:
        p.write_bytes(f.read(4 << 20))
    return p


def _not_gguf(tmp_path: Path) -> Path:
    p = tmp_path / "notes.gguf"
    p.write_text("not a model\n")
    return p


BAD_MODELS = {
    "missing": (lambda t: t / "missing.gguf", ModelFileError, r"missing\.gguf: no such file"),
    "not-gguf": (_not_gguf, ModelFileError, r"notes\.gguf: not a GGUF file"),
    "truncated": (_truncated, ModelFileError, r"cut\.gguf: truncated"),
}


@pytest.mark.parametrize("case", [*BAD_MODELS, "other-vocab-base", "no-text", "no-base-logits"])
def test_evaluate_bad_inputs_name_the_file(case: str, smollm2: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("some text\n")
    kw: dict[str, Any] = {"n_ctx": 128}
    model, err, match = smollm2, InputError, ""
    if case in BAD_MODELS:
        make, err, match = BAD_MODELS[case]
        model = make(tmp_path)
    elif case == "other-vocab-base":
        kw["base"] = fixtures.synthetic("gqa4-untied")
        err, match = ModelFileError, r"gqa4-untied.*: the base model has another vocabulary"
    elif case == "no-text":
        text, match = tmp_path / "absent.txt", r"absent\.txt: cannot read"
    else:
        kw["base_logits"] = tmp_path / "none.npz"
        match = r"none\.npz: no such base-logits file"
    t0 = time.monotonic()
    with pytest.raises(err, match=match):
        evaluate(EvalRequest(model, text, **kw))
    assert time.monotonic() - t0 < 1.0  # refused before any child starts


def test_jobs_refuse_a_cancelled_token_on_entry(smollm2: Path) -> None:
    token = CancelToken()
    token.cancel()
    for job, request in [
        (evaluate, EvalRequest(smollm2, fixtures.WIKI)),
        (run_tasks, TasksRequest(smollm2, TaskKind.MULTIPLE_CHOICE, Path("x"))),
        (bench, BenchRequest(smollm2)),
        (measure_memory_fit, MemoryFitRequest(smollm2, 512)),
        (list_devices, DevicesRequest()),
    ]:
        with pytest.raises(Cancelled):
            job(request, cancel=token)


# --- tasks, bench, memory fit, devices -------------------------------------------------------


@pytest.fixture
def mc_file(tmp_path: Path) -> Path:
    p = tmp_path / "arc.bin"
    q = "one two three one two three one two three one two"
    write_multiple_choice(p, [(q, ["three one two", "zebra lamp"], [1, 0])] * 8)
    return p


def test_tasks_job(smollm2: Path, mc_file: Path) -> None:
    req = TasksRequest(smollm2, TaskKind.MULTIPLE_CHOICE, mc_file, name="arc", n_ctx=128,
                       threads=1)  # fmt: skip
    r, events = recorded(run_tasks, req)
    assert r.name == "arc" and r.n_tasks == 8 and r.score == 100.0
    assert "correct" not in r.to_json() and r.to_json()["n_correct"] == 8
    assert {p.phase for _, p in events} == {Phase.LOAD, Phase.TASKS}
    assert events[-1][1].item == "task 8"
    check_progress(events)


@pytest.mark.parametrize("phase", [Phase.LOAD, Phase.TASKS])
def test_tasks_cancel_in_every_phase(
    phase: Phase, smollm2: Path, mc_file: Path, caches: dict[str, Path]
) -> None:
    req = TasksRequest(smollm2, TaskKind.MULTIPLE_CHOICE, mc_file, n_ctx=128, threads=1)
    before = files(mc_file.parent, *caches.values())
    cancel_in(run_tasks, req, phase, mc_file.parent)
    assert files(mc_file.parent, *caches.values()) == before


@pytest.mark.parametrize("case", [*BAD_MODELS, "no-task-file", "bad-task-file"])
def test_tasks_bad_inputs_name_the_file(case: str, smollm2: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "mc.bin"
    write_multiple_choice(tasks, [("q", ["a", "b"], [1, 0])])
    model, err, match = smollm2, InputError, ""
    if case in BAD_MODELS:
        make, err, match = BAD_MODELS[case]
        model = make(tmp_path)
    elif case == "no-task-file":
        tasks, match = tmp_path / "gone.bin", r"gone\.bin: cannot read task file"
    else:
        tasks.write_bytes(b"\x01")
        match = r"mc\.bin: not a llama.cpp multiple-choice file"
    with pytest.raises(err, match=match):
        run_tasks(TasksRequest(model, TaskKind.MULTIPLE_CHOICE, tasks, n_ctx=128))


BENCH = BenchRequest(Path(), tests=((32, 0), (0, 8)), repetitions=1, threads=1)


def test_bench_job(smollm2: Path) -> None:
    import dataclasses

    r, events = recorded(bench, dataclasses.replace(BENCH, model=smollm2))
    assert isinstance(r, BenchResult)
    assert [x.test_name for x in r.records] == ["pp32", "tg8"]
    assert [p.item for _, p in events if p.phase is Phase.BENCH][-2:] == ["pp32", "tg8"]
    assert list(r.to_json()[0]) == list(r.records[0].to_json())  # llama-bench's keys
    check_progress(events)


@pytest.mark.parametrize("phase", [Phase.LOAD, Phase.BENCH])
def test_bench_cancel_in_every_phase(phase: Phase, smollm2: Path, tmp_path: Path) -> None:
    import dataclasses

    model = tmp_path / "m.gguf"
    model.symlink_to(smollm2)
    cancel_in(bench, dataclasses.replace(BENCH, model=model), phase, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"m.gguf"}


@pytest.mark.parametrize("case", [*BAD_MODELS, "no-tests", "bad-depth"])
def test_bench_bad_inputs(case: str, smollm2: Path, tmp_path: Path) -> None:
    import dataclasses

    req = dataclasses.replace(BENCH, model=smollm2)
    err: type[Exception] = InputError
    if case in BAD_MODELS:
        make, err, match = BAD_MODELS[case]
        req = dataclasses.replace(req, model=make(tmp_path))
    elif case == "no-tests":
        req, match = dataclasses.replace(req, tests=()), "bad benchmark: tests"
    else:
        req, match = dataclasses.replace(req, depths=(-1,)), r"bad benchmark depth\(s\): \[-1\]"
    with pytest.raises(err, match=match):
        bench(req)


def test_memory_fit_job(smollm2: Path) -> None:
    r, events = recorded(measure_memory_fit, MemoryFitRequest(smollm2, 1024))
    assert r.n_ctx == 1024 and r.kv_cache > 0 and r.compute > 0 and r.total > r.kv_cache
    assert {p.phase for _, p in events} == {Phase.LOAD}
    check_progress(events)


def test_memory_fit_cancel(smollm2: Path, tmp_path: Path) -> None:
    cancel_in(measure_memory_fit, MemoryFitRequest(smollm2, 1024), Phase.LOAD, tmp_path)


@pytest.mark.parametrize("case", [*BAD_MODELS, "small-ctx"])
def test_memory_fit_bad_inputs(case: str, smollm2: Path, tmp_path: Path) -> None:
    if case in BAD_MODELS:
        make, err, match = BAD_MODELS[case]
        req = MemoryFitRequest(make(tmp_path), 512)
    else:
        err, match, req = InputError, "context size 8 is too small", MemoryFitRequest(smollm2, 8)
    with pytest.raises(err, match=match):
        measure_memory_fit(req)


def test_list_devices_has_the_cpu() -> None:
    devices = list_devices(DevicesRequest())
    cpu = [d for d in devices if d.type is DeviceType.CPU]
    assert cpu and cpu[0].backend == "CPU" and cpu[0].name
    assert all(d.memory_total >= d.memory_free >= 0 for d in devices)


# --- the typed results store ------------------------------------------------------------------


def test_results_store_round_trips_typed_rows(
    smollm2: Path, tmp_path: Path, mc_file: Path, caches: dict[str, Path]
) -> None:
    model = tmp_path / "smol.gguf"
    shutil.copy(smollm2, model)
    text = caches["work"] / "wiki.txt"
    kld = evaluate(EvalRequest(model, text, base=smollm2, cache_dir=caches["cache"], **SMALL))
    ppl = evaluate(EvalRequest(model, text, n_ctx=128, n_chunks=2, threads=1))
    task = run_tasks(TasksRequest(model, TaskKind.MULTIPLE_CHOICE, mc_file, name="arc",
                                  n_ctx=128, threads=1))  # fmt: skip
    speed = bench(BenchRequest(model, tests=((16, 0),), repetitions=1, threads=1))
    record_eval(model, kld)
    record_eval(model, ppl)
    record_tasks(model, task)
    path = record_bench(model, speed)
    raw = json.loads(path.read_text())
    assert set(raw) == {"format", "eval", "tasks", "bench", "variant", "versions"}
    stored = load_results(model)
    assert stored.variant is not None and stored.variant.file == "smol.gguf"
    assert stored.versions is not None and stored.versions.lwq
    kinds = {e.kind: e.result for e in stored.evals}
    assert kinds["kld"] == kld and kinds["ppl"] == ppl  # every field, every percentile
    [t] = stored.tasks
    assert t.result.score == task.score and t.result.correct == () and len(t.file_sha256) == 64
    [s] = stored.bench
    assert s.record == speed.records[0]
    # the file format is what it was: results as ``--json`` prints them, plus kind/recorded
    [body] = [v for v in raw["eval"].values() if v["kind"] == "kld"]
    assert {k: v for k, v in body.items() if k not in ("kind", "recorded")} == json.loads(
        json.dumps(kld.to_json())
    )


def test_a_damaged_results_file_names_itself(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    res = tmp_path / "m.gguf.lwq-results.json"
    res.write_text(json.dumps({"format": "lwq-results", "eval": {"k": {"kind": "ppl"}}}))
    with pytest.raises(InputError, match=r"m\.gguf\.lwq-results\.json: damaged results file"):
        load_results(model)
    res.write_text("{")
    with pytest.raises(InputError, match=r"m\.gguf\.lwq-results\.json: unreadable"):
        load_results(model)
    assert load_results(tmp_path / "none.gguf").evals == ()
