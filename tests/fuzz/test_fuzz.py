"""The seeded in-process fuzz run (issue #9): >= 10,000 structure-aware malformed inputs
across model GGUFs, imatrix GGUFs, legacy ``.dat`` files, plan JSON and size/bpw strings.

Rule: every case ends in a project error or a valid result within the per-case bound
(``harness.CASE_TIMEOUT``), under ``RLIMIT_AS`` (``harness.MEMORY_LIMIT``). The slow mode:
``pytest tests/fuzz --fuzz-cases 200000``; another seed: ``--fuzz-seed S``. A failing case is
reproduced alone with ``python tests/fuzz/harness.py case FORMAT SEED INDEX``.
"""

from __future__ import annotations

import time

import harness
import pytest


@pytest.fixture(scope="module")
def fuzz_run(fuzz_cases: int | None, fuzz_seed: int | None) -> dict[str, harness.BatchResult]:
    seed = harness.DEFAULT_SEED if fuzz_seed is None else fuzz_seed
    counts = harness.scaled_counts(fuzz_cases)
    t0 = time.perf_counter()
    results = harness.run_all(seed, counts)
    wall = time.perf_counter() - t0
    total = sum(r.cases for r in results.values())
    print(f"\nfuzz seed {seed}: {total} cases in {wall:.1f} s")
    for fmt, r in results.items():
        print(f"  {fmt:15} {r.cases:7} cases  {r.counts}  ({r.seconds:.1f} s in-process)")
    harness.LAST_REPORT = harness.report_markdown(results, wall)
    return results


def test_fuzz_case_count(fuzz_run: dict[str, harness.BatchResult], fuzz_cases: int | None) -> None:
    total = sum(r.cases for r in fuzz_run.values())
    assert total >= (fuzz_cases or 10_000) * 0.99
    # every case ran: none lost to a crashed batch
    for fmt, r in fuzz_run.items():
        assert r.cases >= harness.scaled_counts(fuzz_cases)[fmt], fmt


@pytest.mark.parametrize("fmt", harness.FORMATS)
def test_fuzz_no_escape(fuzz_run: dict[str, harness.BatchResult], fmt: str) -> None:
    r = fuzz_run[fmt]
    lines = [
        f"{e.kind} {e.exc_type} at {e.where}: {e.message[:160]!r} — case `{e.fmt} {e.seed} "
        f"{e.index}` ({r.classes[harness._ekey(e)]} cases), minimal: {e.minimal[:160]}"
        for e in r.escapes
    ]
    assert not r.escapes, f"{fmt}: {r.n_bad} of {r.cases} cases escape:\n" + "\n".join(lines)


def test_fuzz_reproducible() -> None:
    """The same (format, seed, index) is the same input, byte for byte."""
    for fmt in harness.FORMATS:
        a = harness.make_case(fmt, 3, 17)
        b = harness.make_case(fmt, 3, 17)
        assert (a.payload, a.desc) == (b.payload, b.desc)
