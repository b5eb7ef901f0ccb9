"""Results: the per-model project folder (its versioned state, its lock, opening a model or
project as the app does), the per-variant results store and the model-card report.
"""

from __future__ import annotations

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
    "EvalRecord",
    "OpenProjectRequest",
    "OpenProjectResult",
    "ProjectLock",
    "ProjectLocked",
    "ProjectState",
    "ProjectVariant",
    "SpeedRecord",
    "StoredResults",
    "TaskRecord",
    "Variant",
    "Versions",
    "attach_imatrix",
    "calibration_name",
    "calibration_path",
    "check_plan_name",
    "check_unlocked",
    "ensure_project",
    "find_calibration",
    "load_results",
    "load_state",
    "open_project",
    "project_dir",
    "project_imatrix_path",
    "project_path",
    "project_plan",
    "project_plans",
    "read_project",
    "record_bench",
    "record_eval",
    "record_tasks",
    "render_report",
    "results_path",
    "save_state",
]
