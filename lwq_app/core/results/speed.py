"""The one-click speed test: the bench of a variant, F16 and a stock mix, same settings.

A laptop is never idle, so a speed figure means little without the load it was measured
under: the test samples what the *other* processes on the machine use (in cores) before and
after, and says so beside the figures. The benches run at normal priority — the app runs
its other children niced so the GUI stays smooth, but a niced bench loses to any competing
process (measured: tg128 under a one-core busy loop, niced 19: a fraction of llama-bench's
figure) and would no longer be the same test as llama-bench's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from ..evaluate.bench import BenchResult, bench
from ..jobs.boundary import public_job
from ..jobs.errors import InputError
from ..jobs.progress import CancelToken, Progress, ProgressSink, check, no_progress
from .eval_settings import EvalSettings
from .store import record_bench

#: other processes using more than this many cores make the machine "busy"
BUSY_CORES = 0.5
#: seconds the load is sampled over
SAMPLE_SECONDS = 0.5


@dataclass(frozen=True)
class MachineLoad:
    """What else the machine was doing: the 1-minute load average, and the cores the other
    processes (not lwq's own process tree) used over a short sample."""

    load1: float
    n_cpus: int
    other_cores: float
    busy: bool

    def describe(self) -> str:
        """``"load average 3.1 on 2 cores; other processes used 1.0 core (busy)"``."""
        state = " (busy)" if self.busy else ""
        return (
            f"load average {self.load1:.2f} on {self.n_cpus} cores; other processes used "
            f"{self.other_cores:.1f} core{'s' if self.other_cores != 1 else ''}{state}"
        )


def _own_tree() -> list[psutil.Process]:
    me = psutil.Process()
    try:
        return [me, *me.children(recursive=True)]
    except psutil.Error:
        return [me]


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def machine_load(sample: float = SAMPLE_SECONDS) -> MachineLoad:
    """Sample the machine for ``sample`` seconds (a sleep: it uses no CPU itself)."""
    n = os.cpu_count() or 1
    procs = _own_tree()
    sys0, own0, t0 = psutil.cpu_times(), _cpu_seconds(procs), time.monotonic()
    time.sleep(sample)
    sys1, own1, t1 = psutil.cpu_times(), _cpu_seconds(procs), time.monotonic()

    def busy_seconds(t: Any) -> float:
        idle = float(getattr(t, "idle", 0.0)) + float(getattr(t, "iowait", 0.0))
        return float(sum(t)) - idle

    used = max(0.0, busy_seconds(sys1) - busy_seconds(sys0) - (own1 - own0))
    other = min(float(n), used / max(t1 - t0, 1e-6))
    return MachineLoad(os.getloadavg()[0], n, round(other, 2), other > BUSY_CORES)


@dataclass(frozen=True)
class SpeedTestRequest:
    """Bench each of ``models`` (the variant first, then what it is compared with) with the
    setting's tests, threads and GPU layers."""

    models: tuple[Path, ...]
    settings: EvalSettings


@dataclass(frozen=True)
class SpeedTestResult:
    runs: tuple[tuple[Path, BenchResult], ...]
    load_before: MachineLoad
    load_after: MachineLoad


@public_job("speed test")
def speed_test(
    request: SpeedTestRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> SpeedTestResult:
    """Bench every model in turn (one child each, normal priority) and store the records;
    progress is the bench's, per model, over the whole test."""
    models = tuple(dict.fromkeys(Path(m) for m in request.models))
    if not models:
        raise InputError("speed test: no model given")
    for m in models:
        if not m.is_file():
            raise InputError(f"{m}: no such model file")
    check(cancel)
    before = machine_load()
    runs = []
    for i, model in enumerate(models):
        check(cancel)

        def part(p: Progress, i: int = i, name: str = model.name) -> None:
            item = f"{name} · {p.item}" if p.item else name
            progress(replace(p, item=item, overall=(i + p.position) / len(models)))

        result = bench(request.settings.bench_request(model), progress=part, cancel=cancel)
        record_bench(model, result)
        runs.append((model, result))
    return SpeedTestResult(tuple(runs), before, machine_load())
