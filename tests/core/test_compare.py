"""The project's results table, figures, variants and model card, on really measured files.

The variants (stock Q4_K_M and Q8_0, a custom plan) are quantized from SmolLM2 and measured
with small counts (``recorded_results``); every figure of the table must be the stored raw
record's, its text the formatter's, shrinkage must be against the stock mix nearest in
tensor bytes, the Pareto front must equal the brute-force definition, and a record of
another setting must be flagged.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from recorded_results import Recorded, recorded

import fixtures
from lwq_app.core.jobs.errors import InputError
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.diff import diff_plans
from lwq_app.core.plan.file_size import predict_file_size
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.plan.quantize import sidecar_path
from lwq_app.core.plan.readback import plan_from_gguf
from lwq_app.core.plan.stock_mixes import QUANT_PRESETS
from lwq_app.core.results.charts import (
    ScatterPoint,
    dominates,
    pareto_front,
    pareto_steps,
    scatter_points,
    speed_bars,
    task_bars,
)
from lwq_app.core.results.compare import (
    FLAG,
    ResultsTable,
    format_cell,
    nearest_stock_row,
    results_table,
    sort_key,
)
from lwq_app.core.results.plan_diff import variants_diff
from lwq_app.core.results.project import PROJECT_VERSION, ProjectState
from lwq_app.core.results.report import export_card, render_card, table_text
from lwq_app.core.results.store import load_results, results_path
from lwq_app.core.results.variants import (
    check_variant_file,
    delete_variant,
    named_preset,
    nearest_stock_mixes,
    rename_variant,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rec(smollm2: Path, golden_imatrix: Path) -> Recorded:
    return recorded(smollm2, golden_imatrix)


@pytest.fixture(scope="module")
def state(rec: Recorded) -> ProjectState:
    model = open_model(rec.base)
    variants = tuple(check_variant_file(p, model) for p in rec.variants)
    return ProjectState(
        PROJECT_VERSION, model.name, model.architecture, "0" * 64, rec.base,
        imatrix=rec.imatrix, variants=variants,
    )  # fmt: skip


@pytest.fixture(scope="module")
def table(rec: Recorded, state: ProjectState) -> ResultsTable:
    return results_table(state, open_model(rec.base), rec.settings)


def test_table_shows_exactly_the_stored_records(rec: Recorded, table: ResultsTable) -> None:
    assert [r.path for r in table.rows] == [rec.base, *rec.variants]
    assert table.rows[0].is_base and table.rows[0].name == "F16"
    assert not table.mixed
    for r in table.rows[1:]:
        stored = load_results(r.path)
        (ev,) = stored.evals
        s = ev.result.stats
        assert r.kld == s
        for key, value, unc in (
            ("ppl", s.ppl, s.ppl_unc),
            ("kld", s.kld, s.kld_unc),
            ("rms_dp", s.rms_dp, s.rms_dp_unc),
            ("same_top", s.same_top, s.same_top_unc),
        ):
            c = r.cell(key)
            assert (c.value, c.unc, c.comparable) == (value, unc, True), key
        assert r.cell("ppl_cor").value == s.cor
        assert format_cell(r, table.column("kld")) == f"{s.kld:.6f} ±{s.kld_unc:.6f}"
        assert format_cell(r, table.column("ppl")) == f"{s.ppl:.4f} ±{s.ppl_unc:.4f}"
        assert format_cell(r, table.column("ppl_cor")) == f"{100 * s.cor:.2f}%"
        want = f"{100 * s.same_top:.3f}% ±{100 * s.same_top_unc:.3f}%"
        assert format_cell(r, table.column("same_top")) == want
        for t in stored.tasks:
            c = r.cell(f"task:{t.result.name}")
            assert (c.value, c.unc) == (t.result.score, t.result.stderr)
            text = f"{t.result.score:.2f}% ±{t.result.stderr:.2f}%"
            assert format_cell(r, table.column(f"task:{t.result.name}")) == text
        scored = {t.result.name for t in stored.tasks}
        assert scored == [{"arc", "hellaswag"}, {"arc"}, set()][table.rows.index(r) - 1]
        for name in {"arc", "hellaswag"} - scored:
            assert format_cell(r, table.column(f"task:{name}")) == "–"
        for b in stored.bench:
            key = f"speed:{b.record.test_name}"
            assert (r.cell(key).value, r.cell(key).unc) == (b.record.avg_ts, b.record.stddev_ts)
            want = f"{b.record.avg_ts:.2f} ± {b.record.stddev_ts:.2f}"
            assert format_cell(r, table.column(key)) == want
        assert {b.record.test_name for b in stored.bench} == {"pp64", "tg16"}
        assert r.file_bytes == r.path.stat().st_size
        assert r.tensor_bytes == open_model(r.path).tensor_data_bytes
        assert r.bpw == pytest.approx(r.tensor_bytes * 8 / open_model(rec.base).n_params)
    # the base's PPL is the one its variants' KLD runs measured
    base_ppl = table.rows[1].kld.ppl_base
    assert table.rows[0].cell("ppl").value == base_ppl
    assert [c.header for c in table.columns][-2:] == ["pp64 t/s", "tg16 t/s"]


def test_stock_mixes_and_shrinkage_against_the_nearest(rec: Recorded, table: ResultsTable) -> None:
    model = open_model(rec.base)
    assert [r.stock_mix for r in table.rows[1:]] == ["Q4_K_M", None, "Q8_0"]
    assert format_cell(table.rows[2], table.column("stock")) == "custom"
    stock = {n: plan_from_preset(model, n, True).size_bytes for n in QUANT_PRESETS}
    for r in table.rows[1:]:
        name = min(stock, key=lambda n: (abs(stock[n] - r.tensor_bytes), n))
        assert (r.nearest_stock, r.nearest_stock_bytes) == (name, stock[name])
        assert r.cell("shrinkage").value == pytest.approx(1 - r.tensor_bytes / stock[name])
        text = f"{100 * (1 - r.tensor_bytes / stock[name]):.2f}% vs {name}"
        assert format_cell(r, table.column("shrinkage")) == text
    assert table.rows[1].shrinkage == 0  # a stock mix is its own nearest
    assert table.rows[0].shrinkage is None
    assert format_cell(table.rows[0], table.column("shrinkage")) == "–"
    # sorting: numbers as numbers, an unmeasured cell last
    col = table.column("kld")
    order = sorted(range(len(table.rows)), key=lambda i: sort_key(table.rows[i], col))
    assert order[-1] == 0  # the base has no KLD
    klds = [table.rows[i].kld.kld for i in order[:-1]]
    assert klds == sorted(klds)
    assert named_preset("smollm2-q4_k_m-imat") == "Q4_K_M" and named_preset("my-plan") is None


def _brute_front(points: list[ScatterPoint]) -> set[int]:
    pool = [p for p in points if p.comparable]
    return {p.row for p in pool if not any(dominates(q, p) for q in pool if q is not p)}


def test_pareto_front_is_the_brute_force_one(table: ResultsTable) -> None:
    points = list(scatter_points(table))
    assert [p.row for p in points] == [1, 2, 3]
    for p in points:
        assert (p.size, p.kld) == (table.rows[p.row].file_bytes, table.rows[p.row].kld.kld)
    assert [p.stock for p in points] == [True, False, True]
    front = pareto_front(points)
    assert {p.row for p in front} == _brute_front(points)
    assert [p.size for p in front] == sorted(p.size for p in front)
    xs, ys = pareto_steps(front)
    assert len(xs) == 2 * len(front) - 1 and xs[0] == front[0].size and ys[-1] == front[-1].kld
    rng = random.Random(7)
    for trial in range(200):
        n = rng.randrange(1, 14)
        pts = [
            ScatterPoint(i, f"v{i}", Path(f"v{i}"), rng.randrange(1, 8) * 100,
                         rng.choice([0.01, 0.02, 0.03, 0.05, 0.08]), 0.0,
                         rng.random() < 0.5, rng.random() < 0.85)
            for i in range(n)
        ]  # fmt: skip
        assert {p.row for p in pareto_front(pts)} == _brute_front(pts), trial


def test_records_of_another_setting_are_flagged(
    rec: Recorded, state: ProjectState, table: ResultsTable
) -> None:
    model = open_model(rec.base)
    other = replace(rec.settings, n_chunks=3, threads=4)
    t = results_table(state, model, other)
    assert t.mixed
    r = t.rows[1]
    c = r.cell("kld")
    assert c.value == table.rows[1].cell("kld").value and not c.comparable
    assert "2 chunks, the setting's 3" in c.note
    assert format_cell(r, t.column("kld")).endswith(FLAG)
    assert not r.cell("speed:tg16").comparable and "2 threads" in r.cell("speed:tg16").note
    assert r.cell("task:arc").comparable  # the task files and counts are the setting's
    assert pareto_front(scatter_points(t)) == ()  # nothing comparable to put on the front
    assert "†" in render_card(t)


def test_bars_are_the_tables_figures(table: ResultsTable) -> None:
    tasks, speed = task_bars(table), speed_bars(table)
    assert tasks.categories == ("ARC", "HellaSwag") and speed.categories == ("pp64", "tg16")
    assert [s.row for s in tasks.series] == [1, 2]  # Q8_0 was not scored
    assert tasks.series[1].values[1] is None and tasks.series[1].errors[1] is None
    assert [s.row for s in speed.series] == [1, 2, 3]
    for chart in (tasks, speed):
        for s in chart.series:
            for key, v, e in zip(chart.keys, s.values, s.errors, strict=True):
                c = table.rows[s.row].cell(key)
                assert (v, e) == (c.value, c.unc)


def test_check_variant_file_accepts_a_stock_file_and_refuses_another_model(
    rec: Recorded, tmp_path: Path
) -> None:
    model = open_model(rec.base)
    # a stock Q4_K_M as llama-quantize leaves it: no lwq sidecar
    stock = tmp_path / "SmolLM2-Q4_K_M-elsewhere.gguf"
    shutil.copyfile(rec.q4_k_m, stock)
    v = check_variant_file(stock, model)
    assert v.plan_sha256 == plan_from_preset(model, "Q4_K_M", True).content_hash()
    assert v.plan_name is None and v.file_bytes == stock.stat().st_size
    assert v.name == "SmolLM2-Q4_K_M-elsewhere"
    foreign = fixtures.synthetic("gqa4-untied")
    with pytest.raises(InputError) as e:
        check_variant_file(foreign, model)
    msg = str(e.value)
    assert str(foreign) in msg and "not a quantization of" in msg
    assert "architecture" in msg or "tensor" in msg
    with pytest.raises(InputError, match="base model"):
        check_variant_file(rec.base, model)


def test_nearest_stock_mixes_below_and_above(rec: Recorded, table: ResultsTable) -> None:
    model = open_model(rec.base)
    size = table.rows[2].file_bytes  # the custom plan
    below, above = nearest_stock_mixes(model, size, rec.imatrix)
    sizes = {
        n: predict_file_size(plan_from_preset(model, n, True), model, imatrix=rec.imatrix).total
        for n in QUANT_PRESETS
    }
    lower = max((s, n) for n, s in sizes.items() if s < size)
    upper = min((s, n) for n, s in sizes.items() if s > size)
    assert below is not None and (below.file_bytes, below.name) == lower
    assert above is not None and (above.file_bytes, above.name) == upper
    assert below.plan == plan_from_preset(model, below.name, True)
    # the Speed test's stock neighbour among the existing variants
    assert nearest_stock_row(table, 2) == 1  # Q4_K_M is nearer the custom plan than Q8_0
    assert nearest_stock_row(table, 1) == 3


def test_card_copy_rename_delete_and_diff(
    rec: Recorded, state: ProjectState, table: ResultsTable, tmp_path: Path
) -> None:
    card = render_card(table, "SmolLM2")
    for r in table.rows:
        for key in ("file_size", "shrinkage", "kld", "task:arc", "speed:tg16"):
            assert format_cell(r, table.column(key)) in card
    out = export_card(table, tmp_path / "card.md", "SmolLM2")
    assert out.read_text(encoding="utf-8") == card
    tsv = table_text(table, [1]).splitlines()
    assert tsv[0].split("\t") == [c.header for c in table.columns]
    assert tsv[1].split("\t") == [format_cell(table.rows[1], c) for c in table.columns]
    assert table_text(table, [1], markdown=True).startswith("| Variant |")

    renamed = rename_variant(state, rec.custom, "squeezed")
    assert [v.name for v in renamed.variants][1] == "squeezed"
    with pytest.raises(InputError, match="already has a variant"):
        rename_variant(renamed, rec.q8_0, "squeezed")
    # delete a copy with its sidecar and results: every file goes, the state forgets it
    copy = tmp_path / "copy.gguf"
    for src, dst in ((rec.custom, copy), (sidecar_path(rec.custom), sidecar_path(copy)),
                     (results_path(rec.custom), results_path(copy))):  # fmt: skip
        shutil.copyfile(src, dst)
    model = open_model(rec.base)
    with_copy = state.with_variant(check_variant_file(copy, model))
    after = delete_variant(with_copy, copy)
    assert after.variants == state.variants
    assert not copy.exists() and not sidecar_path(copy).exists() and not results_path(copy).exists()
    with pytest.raises(InputError):
        delete_variant(state, copy)

    grid = variants_diff(rec.q4_k_m, rec.custom, model, "Q4_K_M", "custom")
    want = diff_plans(plan_from_gguf(rec.q4_k_m, model), plan_from_gguf(rec.custom, model))
    changed = {c.name for row in grid.cells for c in row if c is not None and c.changed}
    changed |= {c.name for c in grid.extra if c.changed}
    assert changed == {c.name for c in want.changes} and changed
    assert all("ffn_up" in n for n in changed)
    assert all(c.delta_bpw < 0 for row in grid.cells for c in row if c is not None and c.changed)
