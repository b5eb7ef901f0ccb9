"""``lwq report``: model-card tables for a set of variants, from their stored results.

The tables follow the eaddario model cards lwq reproduces: file sizes and shrinkage against
a reference file, perplexity/KLD quality (μPPL, ρPPL, μKLD, RMS Δp, same top p), task
scores with their average, and llama-bench throughput. A missing measurement is shown as
"–" rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from ..evaluate.bench import bench_test_name
from ..evaluate.perplexity import KldResult
from ..jobs.errors import InputError
from .store import EvalRecord, load_results

TASK_COLUMNS = (
    ("arc", "ARC"),
    ("hellaswag", "HellaSwag"),
    ("mmlu", "MMLU"),
    ("truthfulqa", "Truthful QA"),
    ("winogrande", "WinoGrande"),
)
DASH = "–"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


class _Recorded(Protocol):
    @property
    def recorded(self) -> str: ...


R = TypeVar("R", bound=_Recorded)


def _latest(rows: Sequence[R], pred: Callable[[R], bool] | None = None) -> R | None:
    items = [r for r in rows if pred is None or pred(r)]
    return max(items, key=lambda r: r.recorded) if items else None


def _name(p: Path) -> str:
    return p.name.removesuffix(".gguf")


def render_report(variants: list[Path], reference: Path | None = None) -> str:
    """Markdown with the size, quality, task and speed tables of ``variants``."""
    if not variants:
        raise InputError("no variants given")
    for v in variants:
        if not v.is_file():
            raise InputError(f"{v}: no such model file")
    data = {v: load_results(v) for v in variants}
    ref_size = reference.stat().st_size if reference is not None else None
    out = ["## Model sizes\n"]
    rows = []
    for v in variants:
        size = v.stat().st_size
        shrink = f"{100 * (1 - size / ref_size):.2f}%" if ref_size else DASH
        rows.append([_name(v), f"{size / 1e9:.2f} GB", shrink])
    ref_label = f"Shrinkage vs {reference.name}" if reference else "Shrinkage"
    out.append(_table(["Model", "Size", ref_label], rows))

    out.append("\n## Perplexity and KL divergence\n")
    rows = []
    for v in variants:
        e = _latest(data[v].evals, lambda r: r.kind == "kld")
        if e is None or not isinstance(e.result, KldResult):
            p: EvalRecord | None = _latest(data[v].evals)
            pr = None if p is None else p.result
            if isinstance(pr, KldResult):
                pr = pr.perplexity
            ppl = f"{pr.ppl:.4f} ±{pr.ppl_unc:.4f}" if pr is not None else DASH
            rows.append([_name(v), ppl, DASH, DASH, DASH, DASH])
            continue
        s = e.result.stats
        rows.append(
            [
                _name(v),
                f"{s.ppl:.4f} ±{s.ppl_unc:.4f}",
                f"{100 * s.cor:.2f}%",
                f"{s.kld:.6f} ±{s.kld_unc:.6f}",
                f"{100 * s.rms_dp:.3f}% ±{100 * s.rms_dp_unc:.3f}%",
                f"{100 * s.same_top:.3f}% ±{100 * s.same_top_unc:.3f}%",
            ]
        )
    out.append(_table(["Model", "μPPL", "𝜌PPL", "μKLD", "RMS Δp", "Same top p"], rows))

    out.append("\n## Benchmark scores\n")
    rows = []
    for v in variants:
        cells, scores = [], []
        for key, _ in TASK_COLUMNS:
            t = _latest([r for r in data[v].tasks if r.result.name == key])
            if t is None:
                cells.append(DASH)
            else:
                cells.append(f"{t.result.score:.2f}% ±{t.result.stderr:.2f}%")
                scores.append(t.result.score)
        avg = f"{sum(scores) / len(scores):.2f}%" if len(scores) == len(TASK_COLUMNS) else DASH
        rows.append([_name(v), *cells, avg])
    out.append(_table(["Model", *(label for _, label in TASK_COLUMNS), "Avg Score"], rows))

    out.append("\n## Speed\n")
    rows = []
    for v in variants:
        speed = sorted((r.record for r in data[v].bench), key=lambda r: (r.n_prompt, r.n_gen))
        for r in speed:
            test = bench_test_name(r.n_prompt, r.n_gen)
            rows.append([_name(v), test, str(r.n_threads), f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}"])
    out.append(
        _table(["Model", "Test", "Threads", "t/s"], rows) if rows else "No speed tests recorded.\n"
    )
    return "\n".join(out)
