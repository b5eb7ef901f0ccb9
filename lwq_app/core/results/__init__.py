"""Results: the per-model project folder (its versioned state, its lock, opening a model or
project as the app does), the per-variant results store and the model-card report; the
project's evaluation setting, run queue and job journal, the speed test, and the comparison
of its variants (the results table, the size-vs-KLD scatter with its Pareto front).
"""

from __future__ import annotations

from .charts import (
    BarChart,
    ScatterPoint,
    pareto_front,
    scatter_points,
    speed_bars,
    task_bars,
)
from .compare import (
    Column,
    ResultRow,
    ResultsTable,
    format_cell,
    results_table,
    sort_key,
)
from .eval_settings import EvalSettings, TaskSetting
from .journal import Recovery, load_journal, recover_journal, save_journal
from .project import (
    MAX_PLAN_NAME,
    PROJECT_VERSION,
    ProjectState,
    calibration_name,
    calibration_path,
    check_plan_name,
    ensure_project,
    find_calibration,
    load_state,
    project_dir,
    project_path,
    project_plan,
    project_plans,
    read_project,
    save_state,
)
from .project import Variant as ProjectVariant  # results.Variant is the results store's
from .project_lock import (
    ProjectLock,
    ProjectLocked,
    check_unlocked,
)
from .report import (
    export_card,
    render_card,
    render_report,
)
from .run_entry import EntryResult, run_entry
from .run_queue import (
    JobKind,
    JobState,
    QueueEntry,
    quantize_and_check_entries,
)
from .speed import MachineLoad, SpeedTestRequest, SpeedTestResult, machine_load, speed_test
from .store import (
    EvalRecord,
    SpeedRecord,
    StoredResults,
    TaskRecord,
    Variant,
    Versions,
    load_results,
    record_bench,
    record_eval,
    record_tasks,
    results_path,
)
from .variants import (
    StockMix,
    check_variant_file,
    delete_variant,
    nearest_stock_mixes,
    rename_variant,
)
from .workspace import (
    OpenProjectRequest,
    OpenProjectResult,
    attach_imatrix,
    open_project,
    project_imatrix_path,
)

__all__ = [
    "MAX_PLAN_NAME",
    "PROJECT_VERSION",
    "BarChart",
    "Column",
    "EntryResult",
    "EvalRecord",
    "EvalSettings",
    "JobKind",
    "JobState",
    "MachineLoad",
    "OpenProjectRequest",
    "OpenProjectResult",
    "ProjectLock",
    "ProjectLocked",
    "ProjectState",
    "ProjectVariant",
    "QueueEntry",
    "Recovery",
    "ResultRow",
    "ResultsTable",
    "ScatterPoint",
    "SpeedRecord",
    "SpeedTestRequest",
    "SpeedTestResult",
    "StockMix",
    "StoredResults",
    "TaskRecord",
    "TaskSetting",
    "Variant",
    "Versions",
    "attach_imatrix",
    "calibration_name",
    "calibration_path",
    "check_plan_name",
    "check_unlocked",
    "check_variant_file",
    "delete_variant",
    "ensure_project",
    "export_card",
    "find_calibration",
    "format_cell",
    "load_journal",
    "load_results",
    "load_state",
    "machine_load",
    "nearest_stock_mixes",
    "open_project",
    "pareto_front",
    "project_dir",
    "project_imatrix_path",
    "project_path",
    "project_plan",
    "project_plans",
    "quantize_and_check_entries",
    "read_project",
    "record_bench",
    "record_eval",
    "record_tasks",
    "recover_journal",
    "rename_variant",
    "render_card",
    "render_report",
    "results_path",
    "results_table",
    "run_entry",
    "save_journal",
    "save_state",
    "scatter_points",
    "sort_key",
    "speed_bars",
    "speed_test",
    "task_bars",
]
