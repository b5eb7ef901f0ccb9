"""Variants of SmolLM2 with really measured, stored results, made once per test session.

The stock Q4_K_M and Q8_0 and a custom plan (Q4_K_M with every ffn_up at Q2_K) are really
quantized with the golden imatrix, then really measured under one small ``EvalSettings``
(2 chunks of 512 tokens against the F16, 20 ARC-style and 20 HellaSwag tasks from files
written here, bench ``-r 1 -p 64 -n 16`` on 2 threads) and recorded beside each file with the
core's ``record_*``: what the Results tests compare the table, the card and the figures with.
The custom plan is scored on ARC only and Q8_0 on neither (their other cells show "–"), which
also keeps the measuring to about half a minute on an idle 2-core machine.

``LWQ_TEST_RECORDED=DIR`` keeps the measured files in DIR and reuses them in later sessions
(for working on these tests; leave it unset otherwise).
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fixtures
from lwq_app.core.evaluate.bench import bench
from lwq_app.core.evaluate.multiple_choice import run_tasks
from lwq_app.core.evaluate.perplexity import evaluate
from lwq_app.core.evaluate.task_files import write_multiple_choice
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.quant_plan import QuantPlan, plan_from_preset
from lwq_app.core.plan.quantize import QuantizeRequest, quantize
from lwq_app.core.results.eval_settings import EvalSettings, TaskSetting
from lwq_app.core.results.store import record_bench, record_eval, record_tasks, results_path

N_TASKS = 20
WORDS = ["red", "green", "blue", "black", "white", "yellow", "orange", "purple", "brown", "pink"]
NOISE = ["zebra quantum", "seventeen oceans", "volcano pencil", "marble orchestra", "tulip engine"]


@dataclass(frozen=True)
class Recorded:
    base: Path
    imatrix: Path
    folder: Path
    q4_k_m: Path
    q8_0: Path
    custom: Path
    settings: EvalSettings

    @property
    def variants(self) -> tuple[Path, ...]:
        return (self.q4_k_m, self.custom, self.q8_0)


def _task(rng: random.Random) -> tuple[str, str, list[str]]:
    cycle = rng.sample(WORDS, 3)
    return " ".join(cycle * 4), " ".join(cycle * 2), [" ".join(rng.sample(NOISE, 2)) for _ in "abc"]


def write_arc(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        ctx, right, wrong = _task(rng)
        gold = rng.randrange(4)
        answers = [*wrong[:gold], right, *wrong[gold:]]
        tasks.append((ctx, answers, [int(i == gold) for i in range(4)]))
    write_multiple_choice(path, tasks)
    return path


def write_hellaswag(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        ctx, right, wrong = _task(rng)
        gold = rng.randrange(4)
        lines += [ctx, str(gold), *wrong[:gold], right, *wrong[gold:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def custom_plan(base: Path) -> QuantPlan:
    """Q4_K_M with every ffn_up at Q2_K: smaller than Q4_K_M, a custom plan."""
    model = open_model(base)
    stock = plan_from_preset(model, "Q4_K_M", with_imatrix=True)
    return stock.with_types({t.name: "Q2_K" for t in stock.tensors if "ffn_up" in t.name})


def small_settings(folder: Path) -> EvalSettings:
    arc = write_arc(folder / "arc-tasks.bin", N_TASKS, 1)
    hs = write_hellaswag(folder / "hellaswag-tasks.txt", N_TASKS, 2)
    return EvalSettings(
        text=fixtures.WIKI,
        n_ctx=512,
        n_chunks=2,
        tasks=(TaskSetting("arc", arc, N_TASKS), TaskSetting("hellaswag", hs, N_TASKS)),
        task_ctx=256,
        bench_tests=((64, 0), (0, 16)),
        bench_repetitions=1,
        threads=2,
    )


def measure(
    path: Path, base: Path, settings: EvalSettings, tasks: tuple[str, ...] | None = None
) -> None:
    """Run and record what the setting asks for on ``path`` (of its benchmarks only
    ``tasks``, when given: a variant not scored on every one shows "–" there)."""
    record_eval(path, evaluate(settings.eval_request(path, base)))
    for request in settings.task_requests(path):
        if tasks is None or request.name in tasks:
            record_tasks(path, run_tasks(request))
    record_bench(path, bench(settings.bench_request(path)))


_made: dict[tuple[Path, Path], Recorded] = {}


def recorded(base: Path, imatrix: Path) -> Recorded:
    """The measured variants (made on the first call of the session)."""
    key = (base, imatrix)
    if key in _made:
        return _made[key]
    keep = os.environ.get("LWQ_TEST_RECORDED")
    if keep:
        folder = Path(keep)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="lwq-test-results-"))
        atexit.register(shutil.rmtree, folder, True)
    model = open_model(base)
    settings = small_settings(folder)
    plans = {  # file, plan, the benchmarks it is scored on
        "smollm2-Q4_K_M.gguf": (plan_from_preset(model, "Q4_K_M", with_imatrix=True), None),
        "smollm2-custom.gguf": (custom_plan(base), ("arc",)),
        "smollm2-Q8_0.gguf": (plan_from_preset(model, "Q8_0", with_imatrix=True), ()),
    }
    for name, (plan, tasks) in plans.items():
        out = folder / name
        if keep and results_path(out).is_file():
            continue  # measured by an earlier session (LWQ_TEST_RECORDED)
        quantize(QuantizeRequest(base, plan, out, imatrix=imatrix, threads=2))
        measure(out, base, settings, tasks)
    made = Recorded(
        base,
        imatrix,
        folder,
        folder / "smollm2-Q4_K_M.gguf",
        folder / "smollm2-Q8_0.gguf",
        folder / "smollm2-custom.gguf",
        settings,
    )
    _made[key] = made
    return made
