"""Progress infrastructure: ``Phases`` (one monotone 0→1), ``EtaEstimator``, ``Throttle`` and
the CLI bar built on them (one ETA, from the job's overall position)."""

from __future__ import annotations

import io
import itertools

import pytest

from lwq_app.cli.output import ProgressBar
from lwq_app.core.jobs.errors import Cancelled
from lwq_app.core.jobs.progress import (
    CancelToken,
    EtaEstimator,
    Phase,
    Phases,
    Progress,
    Throttle,
    check,
    no_progress,
)

# --- Progress ------------------------------------------------------------------------------


def test_fraction_and_position() -> None:
    p = Progress(Phase.EVAL, 3, 4, "chunk 3")
    assert p.fraction == 0.75 and p.position == 0.75
    assert Progress(Phase.EVAL, 5, 4).fraction == 1.0  # clamped
    assert Progress(Phase.EVAL, 1, 0).fraction == 0.0  # no total yet
    assert Progress(Phase.EVAL, 1, 4, overall=0.9).position == 0.9
    no_progress(p)  # accepts and drops


def test_check_raises_on_a_cancelled_token() -> None:
    check(None)
    token = CancelToken()
    check(token)
    token.cancel()
    with pytest.raises(Cancelled):
        check(token)


# --- Phases --------------------------------------------------------------------------------


def test_phases_give_one_monotone_overall_across_weighted_phases() -> None:
    seen: list[Progress] = []
    phases = Phases(seen.append, [(Phase.HASH, 1), (Phase.QUANTIZE, 3)])
    h = phases.start(Phase.HASH, 10)
    for i in range(1, 11):
        h(Progress(Phase.HASH, i, 10))
    q = phases.sink(Phase.QUANTIZE)
    for i in range(5):
        q(Progress(Phase.QUANTIZE, i, 4, f"t{i}"))
    overall = [p.overall for p in seen]
    assert all(o is not None for o in overall)
    assert overall == sorted(overall)  # type: ignore[type-var]
    assert overall[0] == 0.0
    assert overall[10] == pytest.approx(0.25)  # the hash part is 1/4 of the weight
    assert overall[-1] == pytest.approx(1.0)
    assert seen[-1].item == "t4" and seen[-1].phase is Phase.QUANTIZE  # the rest passes through
    assert seen[12].overall == pytest.approx(0.25 + 0.75 * 1 / 4)


def test_phases_never_go_back() -> None:
    seen: list[Progress] = []
    phases = Phases(seen.append, [(Phase.BASE, 1), (Phase.EVAL, 1)])
    e = phases.sink(Phase.EVAL)
    e(Progress(Phase.EVAL, 2, 4))
    phases.sink(Phase.BASE)(Progress(Phase.BASE, 1, 2))  # an earlier part, reported late
    e(Progress(Phase.EVAL, 1, 4))  # a part that restarts its count
    assert [p.overall for p in seen] == [0.75, 0.75, 0.75]


def test_nested_phases_map_into_the_parents_range() -> None:
    seen: list[Progress] = []
    outer = Phases(seen.append, [(Phase.MEASURE, 1), (Phase.CALIBRATE, 1)])
    outer.sink(Phase.MEASURE)(Progress(Phase.MEASURE, 1, 1))
    inner = Phases(outer.sink(Phase.CALIBRATE), [(Phase.BASE, 1), (Phase.EVAL, 3)])
    inner.sink(Phase.BASE)(Progress(Phase.BASE, 1, 1))  # inner 0.25 -> outer 0.625
    inner.sink(Phase.EVAL)(Progress(Phase.EVAL, 1, 3))  # inner 0.5 -> outer 0.75
    inner.sink(Phase.EVAL)(Progress(Phase.EVAL, 3, 3))
    assert [p.overall for p in seen] == pytest.approx([0.5, 0.625, 0.75, 1.0])
    assert [p.phase for p in seen][1:] == [Phase.BASE, Phase.EVAL, Phase.EVAL]


@pytest.mark.parametrize(
    "parts",
    [
        [(Phase.HASH, 1), (Phase.HASH, 2)],
        [],
        [(Phase.HASH, 0)],
    ],
    ids=["duplicate", "empty", "zero-weight"],
)
def test_phases_reject_bad_parts(parts: list[tuple[Phase, float]]) -> None:
    with pytest.raises(ValueError):
        Phases(no_progress, parts)


# --- EtaEstimator --------------------------------------------------------------------------


def test_eta_at_a_steady_rate() -> None:
    eta = EtaEstimator(window=30, min_elapsed=1.0)
    assert eta.update(0.0, now=100.0) is None
    assert eta.update(0.05, now=100.5) is None  # before min_elapsed
    got = eta.update(0.1, now=101.0)  # 10 %/s -> 9 s left
    assert got == pytest.approx(9.0)
    assert eta.update(0.5, now=105.0) == pytest.approx(5.0)
    assert eta.update(1.0, now=110.0) == 0.0


def test_eta_no_estimate_early_or_without_progress() -> None:
    eta = EtaEstimator(min_elapsed=1.0)
    assert eta.update(0.0, now=0.0) is None
    assert eta.update(0.005, now=5.0) is None  # under 1 % done
    still = EtaEstimator(min_elapsed=1.0)
    still.update(0.3, now=0.0)
    assert still.update(0.3, now=10.0) is None  # no progress: no rate


def test_eta_forgets_a_slow_start_outside_its_window() -> None:
    eta = EtaEstimator(window=10, min_elapsed=1.0)
    eta.update(0.0, now=0.0)
    eta.update(0.01, now=60.0)  # a minute of model loading
    for t in range(61, 80):
        got = eta.update(0.01 + 0.01 * (t - 60), now=float(t))  # then 1 %/s
    assert got == pytest.approx((1 - 0.20) / 0.01, rel=0.01)


def test_eta_restarts_when_the_position_goes_back() -> None:
    eta = EtaEstimator(min_elapsed=1.0)
    eta.update(0.0, now=0.0)
    assert eta.update(0.5, now=5.0) == pytest.approx(5.0)
    assert eta.update(0.1, now=6.0) is None  # a new job on the same estimator
    assert eta.update(0.2, now=7.0) == pytest.approx(8.0)


# --- Throttle ------------------------------------------------------------------------------


def test_throttle_passes_first_last_and_spaced_events(monkeypatch: pytest.MonkeyPatch) -> None:
    import lwq_app.core.jobs.progress as progress

    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    seen: list[float] = []
    th = Throttle(lambda p: seen.append(p.done), interval=0.1)
    for i in range(101):  # 100 events 10 ms apart
        th(Progress(Phase.EVAL, i, 100))
        now[0] += 0.01
    assert seen[0] == 0 and seen[-1] == 100
    assert 9 <= len(seen) <= 13
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert min(gaps[:-1]) >= 9  # about one in ten


# --- the CLI bar ---------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_cli_bar_shows_one_eta_the_phase_and_the_item() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = ProgressBar(out, clock=clock)
    phases = Phases(bar, [(Phase.BASE, 1), (Phase.EVAL, 1)])
    base = phases.start(Phase.BASE, 10)
    for i in range(1, 11):
        clock.t += 1.0
        base(Progress(Phase.BASE, i, 10, f"chunk {i}"))
    ev = phases.sink(Phase.EVAL)
    for i in range(1, 11):
        clock.t += 1.0
        ev(Progress(Phase.EVAL, i, 10, f"chunk {i}"))
    bar.close()
    lines = out.getvalue().splitlines()
    assert all(line.count("ETA") <= 1 for line in lines)
    mid = next(line for line in lines if line.lstrip().startswith("eval") and "ETA" in line)
    # 1 step a second, 20 steps in all: the ETA counts the whole job, not the phase
    assert "eval [" in mid and "chunk" in mid
    pct = int(mid.split("]")[1].split("%")[0])
    assert pct >= 50  # the bar shows the overall position
    left = mid.split("ETA ")[1].split()[0]
    assert left.endswith("s") and int(left.rstrip("s")) == pytest.approx(20 - pct / 5, abs=1.5)
    assert lines[-1].startswith("    eval [" + "#" * 30 + "] 100% 10/10 chunk 10")
    assert "ETA" not in lines[-1]
    assert any(line.lstrip().startswith("base") for line in lines)


def test_cli_bar_has_no_eta_before_the_estimator_has_one() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = ProgressBar(out, clock=clock)
    bar(Progress(Phase.HASH, 0, 2_000_000, "model.gguf"))
    clock.t = 0.5
    bar(Progress(Phase.HASH, 1_000_000, 2_000_000, "model.gguf"))
    assert "ETA" not in out.getvalue()
    assert "0/2000000 model.gguf" in out.getvalue()


def test_cli_bar_on_a_terminal_redraws_one_line() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out, clock = Tty(), _Clock()
    bar = ProgressBar(out, clock=clock)
    for i in range(5):
        clock.t += 1
        bar(Progress(Phase.QUANTIZE, i, 4, f"blk.{i}.attn_q.weight"))
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n") and text.count("\n") == 1
    assert "blk.4.attn_q.weight" in text.rsplit("\r", 1)[1]
