"""The project's results table: one row per variant and the F16 base, the seed's columns.

Every figure comes from the stored results (``store.load_results``) as recorded: size, bpw,
shrinkage against the nearest stock mix by tensor bytes, μPPL, ρPPL, μKLD, RMS Δp, same top
p, each task score and each bench test's t/s, with their ± (uncertainty, stderr, σ). A cell
shows the latest record measured under the project's ``EvalSettings``; where there is none it
shows the latest record of another setting, *flagged* (``Cell.comparable`` false, with a
note saying how it differs), so a table never silently compares unlike measurements.

``format_cell`` is the one place a cell's text is made: the app's table, its copy as TSV or
markdown and the model card (``report.render_card``) all show exactly its text. Columns are defined once
(``Column``: key, header, tooltip) and sorted by ``sort_key``.

Reading is cheap enough for a 40-variant project to open its table in well under 0.5 s: one
JSON file per variant, the file's size and tensor bytes from its results file when they still
describe it (else its header, cached by size and mtime), stock plans computed once per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from ..evaluate.bench import BenchRecord, bench_test_name
from ..evaluate.kld_stats import KldStats
from ..evaluate.multiple_choice import BENCHMARKS, TaskResult
from ..evaluate.perplexity import PerplexityResult
from ..jobs.errors import LwqError
from ..jobs.units import format_size
from ..modelfile.inventory import ModelInfo
from ..plan.stock_mixes import PRESETS_BY_FTYPE
from .cells import EMPTY, Cell, eval_cells, file_digest, speed_cells, task_cells, tensor_bytes
from .eval_settings import EvalSettings
from .project import ProjectState
from .store import StoredResults, load_results
from .variants import StockPlans, stock_mix_of, stock_plans

#: the model cards' benchmark columns (key, header)
TASK_COLUMNS = (
    ("arc", "ARC"),
    ("hellaswag", "HellaSwag"),
    ("mmlu", "MMLU"),
    ("truthfulqa", "Truthful QA"),
    ("winogrande", "WinoGrande"),
)
#: the text of a figure that was not measured
DASH = "–"
#: appended to the text of a cell not measured under the project's setting
FLAG = " †"
CUSTOM = "custom"
TASK_LABELS = dict(TASK_COLUMNS)


@dataclass(frozen=True)
class Column:
    """A column of the table: ``key`` (``ppl``, ``task:arc``, ``speed:tg128``…), its header
    and tooltip."""

    key: str
    header: str
    tip: str

    @property
    def numeric(self) -> bool:
        return self.key not in ("name", "stock")


FIXED_COLUMNS: tuple[Column, ...] = (
    Column("name", "Variant", "The variant's name in the project (F16: the base model)"),
    Column("stock", "Mix", "The llama.cpp stock mix the file is, or custom (a plan of yours)"),
    Column("file_size", "Size", "The file's size on disk"),
    Column("tensor_size", "Tensors", "Bytes of tensor data (what shrinkage compares)"),
    Column("bpw", "bpw", "Bits per weight: tensor data bits over all weights"),
    Column(
        "shrinkage",
        "Shrinkage",
        "How much smaller the tensor data is than the stock mix nearest to it in tensor "
        "bytes (negative: larger)",
    ),
    Column("ppl", "μPPL", "Perplexity on the setting's text, ± its uncertainty"),
    Column("ppl_cor", "ρPPL", "Correlation of the variant's and F16's per-token log-likelihoods"),
    Column("kld", "μKLD", "Mean KL divergence from F16's token distributions, ± uncertainty"),
    Column("rms_dp", "RMS Δp", "RMS of the change in the correct token's probability"),
    Column("same_top", "Same top p", "How often the most likely token is F16's"),
)


@dataclass(frozen=True)
class ResultRow:
    """One file of the table and every record shown for it (raw, as stored)."""

    name: str
    path: Path
    is_base: bool
    stock_mix: str | None
    file_bytes: int
    tensor_bytes: int
    n_params: int
    nearest_stock: str | None  # the stock mix nearest in tensor bytes (None for the base)
    nearest_stock_bytes: int | None
    ppl: PerplexityResult | None = None  # the record of the μPPL cell (a KLD run's own PPL)
    kld: KldStats | None = None
    tasks: Mapping[str, TaskResult] = field(default_factory=dict)
    speed: Mapping[str, BenchRecord] = field(default_factory=dict)
    cells: Mapping[str, Cell] = field(default_factory=dict)
    plan_sha256: str | None = None
    error: str = ""  # a missing file or unreadable results file, as the core said it

    @property
    def bpw(self) -> float:
        return self.tensor_bytes * 8 / max(1, self.n_params)

    @property
    def shrinkage(self) -> float | None:
        """1 - tensor bytes / the nearest stock mix's (None for the base)."""
        if self.nearest_stock_bytes is None or self.is_base:
            return None
        return 1 - self.tensor_bytes / self.nearest_stock_bytes

    def cell(self, key: str) -> Cell:
        return self.cells.get(key, EMPTY)

    @property
    def flagged(self) -> bool:
        """Some figure of the row was measured under another setting."""
        return any(c.value is not None and not c.comparable for c in self.cells.values())


@dataclass(frozen=True)
class ResultsTable:
    """The base row first, then the project's variants in their order."""

    rows: tuple[ResultRow, ...]
    columns: tuple[Column, ...]
    settings: EvalSettings

    @property
    def mixed(self) -> bool:
        """Some shown figure was not measured under the project's setting."""
        return any(r.flagged for r in self.rows)

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)

    def group(self, prefix: str) -> tuple[Column, ...]:
        """The columns of one group, in order: ``"task:"`` (scores) or ``"speed:"`` (t/s)."""
        return tuple(c for c in self.columns if c.key.startswith(prefix))

    def row_of(self, path: Path) -> int | None:
        p = Path(path)
        return next((i for i, r in enumerate(self.rows) if r.path == p), None)


# --- the formatter ---------------------------------------------------------------------------


def _pct(v: float, digits: int) -> str:
    return f"{100 * v:.{digits}f}%"


def _text(key: str, c: Cell, row: ResultRow) -> str:
    v, u = c.value, c.unc
    if v is None:
        return DASH
    if key in ("name", "stock"):
        return str(v)
    assert isinstance(v, (int, float)), (key, v)
    if key in ("file_size", "tensor_size"):
        return format_size(v)
    if key == "bpw":
        return f"{v:.3f}"
    if key == "shrinkage":
        return f"{_pct(v, 2)} vs {row.nearest_stock}"
    if key == "ppl":
        return f"{v:.4f} ±{u or 0:.4f}"
    if key == "ppl_cor":
        return _pct(v, 2)
    if key == "kld":
        return f"{v:.6f} ±{u or 0:.6f}"
    if key in ("rms_dp", "same_top"):
        return f"{_pct(v, 3)} ±{_pct(u or 0, 3)}"
    if key.startswith("task:"):
        return f"{v:.2f}% ±{u or 0:.2f}%"
    if key.startswith("speed:"):
        return f"{v:.2f} ± {u or 0:.2f}"
    raise KeyError(f"unknown results column {key!r}")


def format_cell(row: ResultRow, column: Column) -> str:
    """The cell's text exactly as the table, its copies and the model card show it (``–``:
    not measured; a trailing ``†``: measured under another setting than the project's)."""
    c = row.cell(column.key)
    text = _text(column.key, c, row)
    return text + FLAG if c.value is not None and not c.comparable else text


def sort_key(row: ResultRow, column: Column) -> tuple[int, float | str]:
    """Sorts by the raw value, numbers as numbers; an unmeasured cell sorts last."""
    v = row.cell(column.key).value
    if v is None:
        return (1, 0.0)
    return (0, v.lower() if isinstance(v, str) else float(v))


# --- the table ---------------------------------------------------------------------------------


@dataclass
class _File:
    name: str
    path: Path
    is_base: bool
    stock: str | None
    plan_sha256: str | None
    file_bytes: int
    stored: StoredResults | None = None
    error: str = ""


def _read(f: _File) -> None:
    if not f.path.is_file():
        f.error = f"{f.path}: the file is missing"
        return
    f.file_bytes = f.path.stat().st_size
    try:
        f.stored = load_results(f.path)
    except LwqError as e:
        f.error = str(e)


def _setting_tests(s: EvalSettings) -> list[str]:
    return [bench_test_name(p, g, d) for d in s.bench_depths for p, g in s.bench_tests]


def _columns(s: EvalSettings, files: Sequence[_File]) -> tuple[Column, ...]:
    stored = [f.stored for f in files if f.stored is not None]
    tasks = [t.name for t in s.tasks]
    seen = {r.result.name for st in stored for r in st.tasks}
    tasks += [n for n in (*BENCHMARKS, *sorted(seen)) if n in seen and n not in tasks]
    tests = _setting_tests(s)
    recorded = sorted(
        {r.record for st in stored for r in st.bench},
        key=lambda b: (b.n_depth, b.n_prompt, b.n_gen),
    )
    tests += [n for n in dict.fromkeys(b.test_name for b in recorded) if n not in tests]
    return (
        *FIXED_COLUMNS,
        *(
            Column(f"task:{n}", TASK_LABELS.get(n, n), f"{TASK_LABELS.get(n, n)} score, ± stderr")
            for n in tasks
        ),
        *(Column(f"speed:{t}", f"{t} t/s", f"llama-bench {t}: tokens/s ± σ") for t in tests),
    )


def _nearest(tensor_bytes: int, stock: Mapping[str, int]) -> tuple[str | None, int | None]:
    if not stock:
        return None, None
    name = min(stock, key=lambda n: (abs(stock[n] - tensor_bytes), n))
    return name, stock[name]


def results_table(state: ProjectState, model: ModelInfo, settings: EvalSettings) -> ResultsTable:
    """The table of ``state``'s variants and its base ``model`` (the F16), compared under
    ``settings``. A variant whose file is missing or whose results file is damaged keeps its
    row, with ``error`` saying so."""
    stock: StockPlans = stock_plans(model, state.imatrix is not None)
    stock_bytes = stock.tensor_bytes()
    base = Path(state.base_model)
    preset = PRESETS_BY_FTYPE.get(model.file_type if model.file_type is not None else 1)
    label = preset.name if preset is not None else "base"
    files = [_File(label, base, True, label, None, 0)]
    for v in state.variants:
        files.append(
            _File(v.name, v.path, False, stock_mix_of(v, stock), v.plan_sha256, v.file_bytes)
        )
    for f in files:
        _read(f)
    columns = _columns(settings, files)
    task_names = [c.key[5:] for c in columns if c.key.startswith("task:")]
    tests = [c.key[6:] for c in columns if c.key.startswith("speed:")]
    text_sha = file_digest(settings.text)
    digests = {t.name: d for t in settings.tasks if (d := file_digest(t.path)) is not None}
    rows = []
    for f in files:
        tensor_bytes = model.tensor_data_bytes if f.is_base else _safe_tensor_bytes(f)
        readable = f.is_base or tensor_bytes > 0  # else the row's error says why
        near, near_bytes = (
            (None, None) if f.is_base or not readable else _nearest(tensor_bytes, stock_bytes)
        )
        cells: dict[str, Cell] = {
            "name": Cell(f.name),
            "stock": Cell(f.stock if f.stock is not None else CUSTOM),
            "file_size": Cell(f.file_bytes),
        }
        if readable:
            cells["tensor_size"] = Cell(tensor_bytes)
            cells["bpw"] = Cell(tensor_bytes * 8 / max(1, model.n_params))
        if near_bytes is not None:
            cells["shrinkage"] = Cell(1 - tensor_bytes / near_bytes)
        ppl = kld = None
        tasks: dict[str, TaskResult] = {}
        speed: dict[str, BenchRecord] = {}
        if f.stored is not None:
            ev, ppl, kld = eval_cells(f.stored.evals, settings, text_sha)
            tc, tasks = task_cells(f.stored.tasks, settings, digests, task_names)
            sc, speed = speed_cells(f.stored.bench, settings, tests)
            cells.update(ev)
            cells.update(tc)
            cells.update(sc)
        rows.append(
            ResultRow(
                name=f.name,
                path=f.path,
                is_base=f.is_base,
                stock_mix=f.stock,
                file_bytes=f.file_bytes,
                tensor_bytes=tensor_bytes,
                n_params=model.n_params,
                nearest_stock=near,
                nearest_stock_bytes=near_bytes,
                ppl=ppl,
                kld=kld,
                tasks=MappingProxyType(tasks),
                speed=MappingProxyType(speed),
                cells=MappingProxyType(cells),
                plan_sha256=f.plan_sha256,
                error=f.error,
            )
        )
    rows[0] = _base_ppl(rows)
    return ResultsTable(tuple(rows), columns, settings)


def _base_ppl(rows: list[ResultRow]) -> ResultRow:
    """The base row, with its μPPL taken from a variant's KLD run (which measures the base
    too) when the base has no PPL record of its own."""
    base = rows[0]
    if base.cell("ppl").value is not None:
        return base
    runs = [r for r in rows[1:] if r.kld is not None and r.cell("kld").value is not None]
    runs.sort(key=lambda r: not r.cell("kld").comparable)  # one of the setting first
    if not runs:
        return base
    r, c = runs[0], runs[0].cell("kld")
    assert r.kld is not None
    note = f"the base's PPL from the KLD run of {r.name}"
    if not c.comparable:
        note = f"{c.note} ({note})"
    ppl = Cell(r.kld.ppl_base, r.kld.ppl_base_unc, c.comparable, note)
    return replace(base, cells=MappingProxyType({**base.cells, "ppl": ppl}))


def _safe_tensor_bytes(f: _File) -> int:
    """The tensor bytes of a variant's file; 0 for a missing or unreadable one (its row
    already says why)."""
    if f.error and f.stored is None and not f.path.is_file():
        return 0
    try:
        return tensor_bytes(f.path, f.stored)
    except (OSError, LwqError) as e:
        f.error = f.error or str(e)
        return 0


def nearest_stock_row(table: ResultsTable, index: int) -> int | None:
    """The stock-mix variant of the table nearest in file size to row ``index`` (itself,
    the base and rows with a missing file excluded): what the Speed test compares with."""
    me = table.rows[index]
    pool = [
        i
        for i, r in enumerate(table.rows)
        if i != index and not r.is_base and r.stock_mix is not None and not r.error
    ]
    if not pool:
        return None
    return min(pool, key=lambda i: (abs(table.rows[i].file_bytes - me.file_bytes), i))
