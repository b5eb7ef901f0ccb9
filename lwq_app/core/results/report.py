"""``lwq report``: model-card tables for a set of variants, from their stored results.

The tables follow the eaddario model cards lwq reproduces: file sizes and shrinkage against
a reference file, perplexity/KLD quality (μPPL, ρPPL, μKLD, RMS Δp, same top p), task
scores with their average, and llama-bench throughput. A missing measurement is shown as
"–" rather than guessed.

``render_report`` reads a list of files (``lwq report``); ``render_card`` renders a project's
``ResultsTable`` (the app's Export model card), every cell the text ``compare.format_cell``
gives the app's table, so the card and the table never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ..evaluate.bench import bench_test_name
from ..evaluate.perplexity import KldResult
from ..jobs.atomic import atomic_write_text
from ..jobs.errors import InputError
from .compare import DASH, TASK_COLUMNS, Column, ResultRow, ResultsTable, format_cell
from .store import EvalRecord, latest, load_results


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table, the first column left-aligned and the figures right-aligned."""
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


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
    out.append(markdown_table(["Model", "Size", ref_label], rows))

    out.append("\n## Perplexity and KL divergence\n")
    rows = []
    for v in variants:
        e = latest(data[v].evals, lambda r: r.kind == "kld")
        if e is None or not isinstance(e.result, KldResult):
            p: EvalRecord | None = latest(data[v].evals)
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
    out.append(markdown_table(["Model", "μPPL", "𝜌PPL", "μKLD", "RMS Δp", "Same top p"], rows))

    out.append("\n## Benchmark scores\n")
    rows = []
    for v in variants:
        cells, scores = [], []
        for key, _ in TASK_COLUMNS:
            t = latest([r for r in data[v].tasks if r.result.name == key])
            if t is None:
                cells.append(DASH)
            else:
                cells.append(f"{t.result.score:.2f}% ±{t.result.stderr:.2f}%")
                scores.append(t.result.score)
        avg = f"{sum(scores) / len(scores):.2f}%" if len(scores) == len(TASK_COLUMNS) else DASH
        rows.append([_name(v), *cells, avg])
    out.append(markdown_table(["Model", *(label for _, label in TASK_COLUMNS), "Avg Score"], rows))

    out.append("\n## Speed\n")
    rows = []
    for v in variants:
        speed = sorted((r.record for r in data[v].bench), key=lambda r: (r.n_prompt, r.n_gen))
        for r in speed:
            test = bench_test_name(r.n_prompt, r.n_gen)
            rows.append([_name(v), test, str(r.n_threads), f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}"])
    out.append(
        markdown_table(["Model", "Test", "Threads", "t/s"], rows)
        if rows
        else "No speed tests recorded.\n"
    )
    return "\n".join(out)


# --- the project's model card, from its results table -------------------------------------------

SIZE_KEYS = ("name", "stock", "file_size", "bpw", "shrinkage")
QUALITY_KEYS = ("name", "ppl", "ppl_cor", "kld", "rms_dp", "same_top")


def _cells(table: ResultsTable, keys: Sequence[str], rows: Iterable[ResultRow]) -> list[list[str]]:
    cols = [table.column(k) for k in keys]
    return [[format_cell(r, c) for c in cols] for r in rows]


def average_score(row: ResultRow, table: ResultsTable) -> str:
    """The mean of the row's task scores when it has every one of the table's, else "–"."""
    cells = [row.cell(c.key) for c in table.group("task:")]
    if not cells or any(c.value is None for c in cells):
        return DASH
    avg = sum(float(c.value) for c in cells if c.value is not None) / len(cells)
    return f"{avg:.2f}%" + ("" if all(c.comparable for c in cells) else " †")


def _setting_lines(table: ResultsTable) -> list[str]:
    s = table.settings
    chunks = "every chunk" if s.n_chunks is None else f"{s.n_chunks} chunks"
    lines = [f"- PPL/KLD: {s.text.name}, context {s.n_ctx}, {chunks}, against the F16"]
    if s.tasks:
        lines.append(
            "- Tasks: "
            + ", ".join(f"{t.name} ({t.n_tasks or 'all'} tasks, {t.path.name})" for t in s.tasks)
        )
    tests = ", ".join(c.key.removeprefix("speed:") for c in table.group("speed:"))
    reps = s.bench_repetitions
    lines.append(f"- Speed: {tests or 'none'}, {reps} repetition{'s' if reps != 1 else ''}")
    if table.mixed:
        lines.append("- † : measured under another setting than this one")
    return lines


def _section(
    table: ResultsTable,
    keys: Sequence[str],
    rows: Sequence[ResultRow],
    empty: str,
    *,
    average: bool = False,
) -> str:
    """One table of the card: ``keys``' columns (the first, the name) for the rows with at
    least one figure among them, plus the average score with ``average``; ``empty`` if none."""
    measured = [r for r in rows if any(r.cell(k).value is not None for k in keys[1:])]
    if not measured:
        return empty
    head = [table.column(k).header for k in keys]
    body = _cells(table, keys, measured)
    if average:
        head.append("Avg Score")
        body = [[*cells, average_score(r, table)] for r, cells in zip(measured, body, strict=True)]
    return markdown_table(head, body)


def render_card(table: ResultsTable, title: str = "") -> str:
    """The model card's tables (sizes, quality, task scores, speed) for a project's variants,
    the F16 base first; the evaluation setting is stated under the title."""
    rows = list(table.rows)
    out = [f"# {title}\n" if title else "", "Measured with lwq under one setting:\n"]
    out.append("\n".join(_setting_lines(table)) + "\n")
    out.append("\n## Model sizes\n")
    out.append(
        markdown_table([table.column(k).header for k in SIZE_KEYS], _cells(table, SIZE_KEYS, rows))
    )
    out.append("\n## Perplexity and KL divergence\n")
    out.append(_section(table, QUALITY_KEYS, rows, "No evaluations recorded.\n"))
    task_keys = ["name", *(c.key for c in table.group("task:"))]
    out.append("\n## Benchmark scores\n")
    empty = "No benchmark scores recorded.\n"
    out.append(_section(table, task_keys, rows, empty, average=True))
    speed_keys = ["name", *(c.key for c in table.group("speed:"))]
    out.append("\n## Speed\n")
    out.append(_section(table, speed_keys, rows, "No speed tests recorded.\n"))
    return "\n".join(x for x in out if x)


def export_card(table: ResultsTable, path: Path, title: str = "") -> Path:
    """Write ``render_card`` to ``path`` atomically (no partial file on failure)."""
    atomic_write_text(Path(path), render_card(table, title))
    return Path(path)


def table_text(
    table: ResultsTable,
    rows: Sequence[int] | None = None,
    columns: Sequence[Column] | None = None,
    *,
    markdown: bool = False,
) -> str:
    """Rows of the table (default: all) as tab-separated text or a markdown table, headers
    first, every cell as ``format_cell`` shows it: what the app copies."""
    cols = list(table.columns if columns is None else columns)
    picked = [table.rows[i] for i in (range(len(table.rows)) if rows is None else rows)]
    head = [c.header for c in cols]
    body = [[format_cell(r, c) for c in cols] for r in picked]
    if markdown:
        return markdown_table(head, body)
    return "\n".join("\t".join(x) for x in [head, *body]) + "\n"
