"""Optimization: budgets, the automatic plan under a budget, the KLD calibration of the
proxy it uses, the predicted KLD of any plan and the plan editor's live readouts.

Jobs: ``auto_plan(AutoPlanRequest)``, ``calibrate(CalibrateRequest)``. Instant:
``predict_kld`` / ``KldPredictor``, ``ReadoutContext.readout``.
"""

from __future__ import annotations

from .auto_plan import (
    DISABLED,
    MAX_RESOLVES,
    SIZE_OPTIONS,
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
from .prediction import (
    CALIBRATED_LABEL,
    PROXY_LABEL,
    KldPrediction,
    KldPredictor,
    predict_kld,
)
from .readout import (
    PlanReadout,
    ReadoutContext,
)

__all__ = [
    "CALIBRATED_LABEL",
    "DEFAULT_CHUNKS",
    "DEFAULT_GROUPS",
    "DEFAULT_TEXT",
    "DISABLED",
    "MAX_RESOLVES",
    "PROBES",
    "PROXY_LABEL",
    "SIZE_OPTIONS",
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
    "KldPrediction",
    "KldPredictor",
    "MemoryBudget",
    "Option",
    "PlanReadout",
    "ReadoutContext",
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
    "predict_kld",
    "solve_plan",
]
