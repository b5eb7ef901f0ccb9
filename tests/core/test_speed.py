"""The one-click speed test: real benches at normal priority, stored, with the machine's load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lwq_app.core.evaluate.bench import BenchRecord
from lwq_app.core.jobs import Cancelled, CancelToken
from lwq_app.core.jobs.child_runner import set_child_niceness
from lwq_app.core.jobs.errors import InputError
from lwq_app.core.jobs.progress import Phase, Progress
from lwq_app.core.jobs.resources import WIKITEXT_EXCERPT
from lwq_app.core.results.eval_settings import EvalSettings
from lwq_app.core.results.speed import SpeedTestRequest, machine_load, speed_test
from lwq_app.core.results.store import load_results, results_path

SMALL = EvalSettings(WIKITEXT_EXCERPT, bench_tests=((64, 0), (0, 16)), bench_repetitions=1)


def test_machine_load_sees_a_busy_process() -> None:
    # a spinner that is not our child (the shell exits, init adopts it): lwq's own children
    # are its jobs, which the sample leaves out
    sh = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    spin = psutil.Process(int(sh.stdout))
    try:
        time.sleep(0.2)
        load = machine_load(0.6)
    finally:
        spin.kill()
    assert load.other_cores >= 0.6, load
    assert load.busy
    assert load.n_cpus == os.cpu_count()
    assert "busy" in load.describe() and "load average" in load.describe()


def test_speed_test_benches_each_model_at_normal_priority(
    smollm2_q4_1: Path, smollm2_f16: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a-q4_1.gguf", tmp_path / "b-f16.gguf"
    shutil.copy(smollm2_q4_1, a)
    shutil.copy(smollm2_f16, b)
    nice_seen: list[int] = []
    events: list[Progress] = []

    def progress(p: Progress) -> None:
        events.append(p)
        if p.phase is Phase.BENCH:
            nice_seen.extend(c.nice() for c in psutil.Process().children())

    set_child_niceness(10)  # what the app does for its other children
    try:
        result = speed_test(SpeedTestRequest((a, b, a), SMALL), progress=progress)
    finally:
        set_child_niceness(0)
    assert [m for m, _ in result.runs] == [a, b]  # a model named twice is benched once
    assert nice_seen and set(nice_seen) == {os.nice(0)}
    positions = [p.position for p in events]
    assert positions == sorted(positions) and positions[-1] == pytest.approx(1.0)
    assert any(p.item.startswith("b-f16.gguf") for p in events)
    for model, bench in result.runs:
        stored = {r.record.test_name: r.record for r in load_results(model).bench}
        assert set(stored) == {"pp64", "tg16"}
        for rec in bench.records:
            assert isinstance(rec, BenchRecord)
            assert stored[rec.test_name] == rec
            assert rec.avg_ts > 0
    assert result.load_before.n_cpus == result.load_after.n_cpus


def test_speed_test_refuses_a_missing_file_and_cancels(smollm2_q4_1: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothing\.gguf"):
        speed_test(SpeedTestRequest((tmp_path / "nothing.gguf",), SMALL))
    with pytest.raises(InputError, match="no model"):
        speed_test(SpeedTestRequest((), SMALL))
    m = tmp_path / "m.gguf"
    shutil.copy(smollm2_q4_1, m)
    token = CancelToken()

    def cancel_at_bench(p: Progress) -> None:
        if p.phase is Phase.BENCH:
            token.cancel()

    with pytest.raises(Cancelled):
        speed_test(SpeedTestRequest((m,), SMALL), progress=cancel_at_bench, cancel=token)
    assert not results_path(m).exists()
