"""Results: the per-model project folder, the per-variant results store and the model-card
report.
"""

from __future__ import annotations

from .project import (
    calibration_name,
    calibration_path,
    ensure_project,
    find_calibration,
    project_dir,
    project_path,
    read_project,
)
from .report import (
    render_report,
)
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

__all__ = [
    "EvalRecord",
    "SpeedRecord",
    "StoredResults",
    "TaskRecord",
    "Variant",
    "Versions",
    "calibration_name",
    "calibration_path",
    "ensure_project",
    "find_calibration",
    "load_results",
    "project_dir",
    "project_path",
    "read_project",
    "record_bench",
    "record_eval",
    "record_tasks",
    "render_report",
    "results_path",
]
