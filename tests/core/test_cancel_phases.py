"""Cancel at the first progress event of each phase of each queue job (quantize, PPL/KLD,
tasks, bench): the job raises ``Cancelled`` and leaves no file, partial or whole, and no
stored result. The sink sets the token, so the cancel lands exactly at that event: the job's
next check or the child runner's next wake-up must honour it. (The app's own Cancel, per job
kind with the window's heartbeat, is tests/gui/test_run_page.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import write_hellaswag
from lwq_app.core.jobs import Cancelled
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.jobs.resources import WIKITEXT_EXCERPT
from lwq_app.core.modelfile import open_model
from lwq_app.core.plan import plan_from_preset
from lwq_app.core.plan.quantize import sidecar_path
from lwq_app.core.results import load_results
from lwq_app.core.results import run_queue as rq
from lwq_app.core.results.eval_settings import EvalSettings, TaskSetting
from lwq_app.core.results.run_entry import run_entry

#: the phases each job reports, in order (quantize: no output hash in the queue)
PHASES = {
    "quantize": (Phase.QUANTIZE, Phase.VERIFY, Phase.WRITE),
    "eval": (Phase.HASH, Phase.LOAD, Phase.BASE, Phase.EVAL),
    "tasks": (Phase.LOAD, Phase.TASKS),
    "bench": (Phase.LOAD, Phase.BENCH),
}
CASES = [(kind, phase) for kind, phases in PHASES.items() for phase in phases]


def settings(task_file: Path) -> EvalSettings:
    return EvalSettings(
        text=WIKITEXT_EXCERPT, n_ctx=128, n_chunks=2, tasks=(TaskSetting("hellaswag", task_file, 20),),
        task_ctx=256, bench_tests=((64, 0), (0, 16)), bench_repetitions=1, threads=1,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "phase"), CASES, ids=[f"{k}-{p.value}" for k, p in CASES])
def test_cancel_at_the_first_event_of_each_phase_leaves_nothing(
    kind: str, phase: Phase, smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fresh caches: the base's hash and logits are computed, so HASH and BASE are reported
    monkeypatch.setenv("LWQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LWQ_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    model = work / smollm2.name
    model.hardlink_to(smollm2)  # results would be stored beside it, in this test's folder
    s = settings(write_hellaswag(work / "hs.txt"))
    out = work / "cancelled.gguf"
    entry = {
        "quantize": lambda: rq.quantize_entry(
            model, plan_from_preset(open_model(model), "Q4_K_M"), None, out, None
        ),
        "eval": lambda: rq.eval_entry(model, smollm2, s),
        "tasks": lambda: rq.task_entry(model, "hellaswag", s),
        "bench": lambda: rq.bench_entry(model, s),
    }[kind]()
    token, seen = CancelToken(), []

    def sink(p: Progress) -> None:
        seen.append(p.phase)
        if p.phase is phase:
            token.cancel()

    with pytest.raises(Cancelled):
        run_entry(entry, progress=sink, cancel=token)
    assert phase in seen
    assert seen.index(phase) == len(seen) - 1 or all(q is phase for q in seen[seen.index(phase) :])
    before = set(PHASES[kind][: PHASES[kind].index(phase)])
    assert set(seen[: seen.index(phase)]) <= before  # the phases came in their order
    left = sorted(p.name for p in work.iterdir())
    assert left == sorted([model.name, "hs.txt"]), left  # no GGUF, sidecar, temp or results
    assert not out.exists() and not sidecar_path(out).exists()
    assert not load_results(model).path.exists()
