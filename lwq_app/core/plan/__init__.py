"""Quantization plans: llama.cpp's stock mixes, the immutable ``QuantPlan`` and the plan job
(``make_plan``), the llama-quantize recipe and the quantize job.
"""

from __future__ import annotations

from .quant_plan import (
    Fallback,
    LayerSummary,
    PlanRequest,
    PlanResult,
    PlanWarning,
    QuantPlan,
    TensorPlan,
    load_plan,
    make_plan,
    plan_from_preset,
    plan_from_types,
)
from .quantize import (
    QuantizeRequest,
    QuantizeResult,
    quantize,
    sidecar_path,
)
from .recipe import (
    Recipe,
    RecipeRequest,
    RecipeResult,
    export_recipe,
    make_recipe,
)
from .stock_mixes import (
    QUANT_PRESETS,
    Preset,
    check_preset,
    get_preset,
)

__all__ = [
    "QUANT_PRESETS",
    "Fallback",
    "LayerSummary",
    "PlanRequest",
    "PlanResult",
    "PlanWarning",
    "Preset",
    "QuantPlan",
    "QuantizeRequest",
    "QuantizeResult",
    "Recipe",
    "RecipeRequest",
    "RecipeResult",
    "TensorPlan",
    "check_preset",
    "export_recipe",
    "get_preset",
    "load_plan",
    "make_plan",
    "make_recipe",
    "plan_from_preset",
    "plan_from_types",
    "quantize",
    "sidecar_path",
]
