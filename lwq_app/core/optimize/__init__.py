"""Optimization: budgets, the automatic plan under a budget and the KLD calibration of the
proxy it uses.

Jobs: ``auto_plan(AutoPlanRequest)``, ``calibrate(CalibrateRequest)``.
"""

from __future__ import annotations

from .auto_plan import (
    DISABLED,
    AutoPlan,
    AutoPlanRequest,
    AutoPlanResult,
    BpwBudget,
    Budget,
    BudgetSpec,
    CalibrationSource,
    Explanation,
    MemoryBudget,
    Option,
    SizeBudget,
    TensorDelta,
    auto_plan,
    budget_from_bpw,
    budget_from_memory,
    check_budget,
    explain,
    explain_groups,
    frontier,
    nearest_preset,
    solve_plan,
)
from .calibration import (
    DEFAULT_CHUNKS,
    DEFAULT_GROUPS,
    DEFAULT_TEXT,
    PROBES,
    CalibrateRequest,
    Calibration,
    CalibrationPoint,
    CalibrationRun,
    calibrate,
    groups,
)

__all__ = [
    "DEFAULT_CHUNKS",
    "DEFAULT_GROUPS",
    "DEFAULT_TEXT",
    "DISABLED",
    "PROBES",
    "AutoPlan",
    "AutoPlanRequest",
    "AutoPlanResult",
    "BpwBudget",
    "Budget",
    "BudgetSpec",
    "CalibrateRequest",
    "Calibration",
    "CalibrationPoint",
    "CalibrationRun",
    "CalibrationSource",
    "Explanation",
    "MemoryBudget",
    "Option",
    "SizeBudget",
    "TensorDelta",
    "auto_plan",
    "budget_from_bpw",
    "budget_from_memory",
    "calibrate",
    "check_budget",
    "explain",
    "explain_groups",
    "frontier",
    "groups",
    "nearest_preset",
    "solve_plan",
]
