"""The cells of the results table, read from one file's stored results.

For each column the latest record measured under the project's ``EvalSettings`` is shown;
where there is none, the latest record of another setting, flagged (``Cell.comparable``
false, ``note`` saying how it differs). File digests (the setting's text and task files)
and tensor-data sizes are cached by path, size and mtime, so reopening a table reads only
the results files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..evaluate.bench import BenchRecord
from ..evaluate.kld_stats import KldStats
from ..evaluate.multiple_choice import TaskResult
from ..evaluate.perplexity import KldResult, PerplexityResult
from ..jobs.errors import LwqError
from ..modelfile.hashing import sha256_file
from ..modelfile.inventory import open_model
from .eval_settings import EvalSettings
from .store import EvalRecord, SpeedRecord, StoredResults, TaskRecord, latest


@dataclass(frozen=True)
class Cell:
    """One figure: ``value`` the raw number (or text) it shows, None when not measured;
    ``unc`` its ± where it has one; ``comparable`` false when it was measured under another
    setting than the project's (``note`` says how)."""

    value: float | int | str | None
    unc: float | None = None
    comparable: bool = True
    note: str = ""


EMPTY = Cell(None)


T = TypeVar("T")
_digests: dict[tuple[str, int, int], str] = {}
_sizes: dict[tuple[str, int, int], int] = {}
_cache_lock = threading.Lock()


def _stamped(path: Path, cache: dict[tuple[str, int, int], T], make: Callable[[], T]) -> T:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        hit = cache.get(key)
    if hit is None:
        hit = make()
        with _cache_lock:
            if len(cache) > 512:
                cache.clear()
            cache[key] = hit
    return hit


def file_digest(path: Path) -> str | None:
    """The file's SHA-256 (cached by size and mtime), None if it cannot be read."""
    try:
        return _stamped(path, _digests, lambda: sha256_file(path))
    except (OSError, LwqError):
        return None


def tensor_bytes(path: Path, stored: StoredResults | None) -> int:
    """The file's tensor data bytes: from its results file when that still describes it."""
    st = path.stat()
    v = stored.variant if stored is not None else None
    if v is not None and v.size == st.st_size and v.mtime_ns == st.st_mtime_ns:
        return v.tensor_data_bytes

    def read() -> int:
        return open_model(path).tensor_data_bytes  # every shard of a split model

    return _stamped(path, _sizes, read)


R = TypeVar("R", EvalRecord, TaskRecord, SpeedRecord)


def _pick(records: Iterable[R], ok: Callable[[R], bool]) -> tuple[R | None, bool]:
    """The latest record measured under the setting, else the latest of any (flagged)."""
    rows = list(records)
    good = latest(rows, ok)
    if good is not None:
        return good, True
    other = latest(rows)
    return other, other is None  # nothing recorded at all is not "another setting"


def _eval_note(p: PerplexityResult, s: EvalSettings, text_sha: str | None) -> str:
    parts = []
    if text_sha is None:
        parts.append(f"the setting's text {s.text} cannot be read")
    elif p.text_sha256 != text_sha:
        parts.append("on another text")
    if p.n_ctx != s.n_ctx:
        parts.append(f"context {p.n_ctx}, the setting's {s.n_ctx}")
    if s.n_chunks is not None and p.n_chunks != s.n_chunks:
        parts.append(f"{p.n_chunks} chunks, the setting's {s.n_chunks}")
    return "measured " + "; ".join(parts or ["under another setting"])


def eval_cells(
    evals: Sequence[EvalRecord], s: EvalSettings, text_sha: str | None
) -> tuple[dict[str, Cell], PerplexityResult | None, KldStats | None]:
    def ok(r: EvalRecord) -> bool:
        return text_sha is not None and s.matches_eval(r.result, text_sha)

    kld, kld_ok = _pick((r for r in evals if r.kind == "kld"), ok)
    ppl, ppl_ok = _pick((r for r in evals if r.kind == "ppl"), ok)
    # a KLD run (it has the PPL too) unless only a PPL run is of the setting
    use_kld = kld is not None and (kld_ok or ppl is None or not ppl_ok)
    rec, good = (kld, kld_ok) if use_kld else (ppl, ppl_ok)
    if rec is None:
        return {}, None, None
    res = rec.result
    p = res.perplexity if isinstance(res, KldResult) else res
    note = "" if good else _eval_note(p, s, text_sha)
    cells = {"ppl": Cell(p.ppl, p.ppl_unc, good, note)}
    stats = res.stats if isinstance(res, KldResult) else None
    if stats is not None:
        cells.update(
            ppl=Cell(stats.ppl, stats.ppl_unc, good, note),
            ppl_cor=Cell(stats.cor, None, good, note),
            kld=Cell(stats.kld, stats.kld_unc, good, note),
            rms_dp=Cell(stats.rms_dp, stats.rms_dp_unc, good, note),
            same_top=Cell(stats.same_top, stats.same_top_unc, good, note),
        )
    return cells, p, stats


def task_cells(
    tasks: Sequence[TaskRecord], s: EvalSettings, digests: dict[str, str], names: Iterable[str]
) -> tuple[dict[str, Cell], dict[str, TaskResult]]:
    cells: dict[str, Cell] = {}
    results: dict[str, TaskResult] = {}
    for name in names:
        rec, good = _pick(
            (r for r in tasks if r.result.name == name),
            lambda r: s.matches_task(r.result, r.file_sha256, digests),
        )
        if rec is None:
            continue
        t = rec.result
        note = "" if good else f"measured on {t.n_tasks} tasks of another task file or count"
        cells[f"task:{name}"] = Cell(t.score, t.stderr, good, note)
        results[name] = t
    return cells, results


def speed_cells(
    bench: Sequence[SpeedRecord], s: EvalSettings, tests: Iterable[str]
) -> tuple[dict[str, Cell], dict[str, BenchRecord]]:
    cells: dict[str, Cell] = {}
    records: dict[str, BenchRecord] = {}
    for test in tests:
        rec, good = _pick(
            (r for r in bench if r.record.test_name == test),
            lambda r: s.matches_bench(r.record),
        )
        if rec is None:
            continue
        b = rec.record
        note = (
            ""
            if good
            else (
                f"measured with {b.n_threads} threads, {b.n_gpu_layers} GPU layers: "
                "not the setting's"
            )
        )
        cells[f"speed:{test}"] = Cell(b.avg_ts, b.stddev_ts, good, note)
        records[test] = b
    return cells, records
