"""Quantization plans: llama.cpp's stock mixes, the immutable ``QuantPlan`` and the plan job
(``make_plan``), the plan editor's model (type ladders, the layers × kinds grid, plan diffs),
reading a quantized GGUF back as a plan, the llama-quantize recipe (export and import) and the
quantize job.
"""

from __future__ import annotations

from .diff import (
    PlanDiff,
    TensorChange,
    diff_plans,
)
from .file_size import (
    FileLayout,
    FileSize,
    file_layout,
    predict_file_size,
)
from .grid import (
    PlanCell,
    PlanGrid,
    plan_grid,
)
from .ladder import (
    ladder_union,
    plan_ladders,
    step_changes,
    step_plan,
    tensor_ladder,
    type_order_key,
)
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
    plan_from_dict,
    plan_from_preset,
    plan_from_types,
    writable_presets,
)
from .quantize import (
    QuantizeRequest,
    QuantizeResult,
    quantize,
    sidecar_path,
)
from .readback import (
    plan_from_gguf,
)
from .recipe import (
    Recipe,
    RecipeImport,
    RecipeRequest,
    RecipeResult,
    UnusedOverride,
    export_recipe,
    import_recipe,
    make_recipe,
    parse_tensor_types,
    plan_from_recipe,
    read_recipe_text,
    recipe_import,
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
    "FileLayout",
    "FileSize",
    "LayerSummary",
    "PlanCell",
    "PlanDiff",
    "PlanGrid",
    "PlanRequest",
    "PlanResult",
    "PlanWarning",
    "Preset",
    "QuantPlan",
    "QuantizeRequest",
    "QuantizeResult",
    "Recipe",
    "RecipeImport",
    "RecipeRequest",
    "RecipeResult",
    "TensorChange",
    "TensorPlan",
    "UnusedOverride",
    "check_preset",
    "diff_plans",
    "export_recipe",
    "file_layout",
    "get_preset",
    "import_recipe",
    "ladder_union",
    "load_plan",
    "make_plan",
    "make_recipe",
    "parse_tensor_types",
    "plan_from_dict",
    "plan_from_gguf",
    "plan_from_preset",
    "plan_from_recipe",
    "plan_from_types",
    "plan_grid",
    "plan_ladders",
    "predict_file_size",
    "quantize",
    "read_recipe_text",
    "recipe_import",
    "sidecar_path",
    "step_changes",
    "step_plan",
    "tensor_ladder",
    "type_order_key",
    "writable_presets",
]
