"""Export a plan as a reproduce recipe for llama.cpp's own ``llama-quantize``.

The recipe is the base ftype, ``--pure``, the imatrix, and a ``--tensor-type-file`` holding one
anchored, escaped name per quantizable tensor (``^blk\\.0\\.attn_q\\.weight$=q4_k``), so the
native tool writes exactly the plan's types. llama-quantize lowercases each pattern, so names
with capitals cannot be expressed and are refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.atomic import atomic_write_text
from ..jobs.boundary import public_job
from ..jobs.errors import PlanError, shown
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress
from .quant_plan import PlanRequest, QuantPlan, make_plan
from .quantize import choose_base_ftype, override_pattern
from .stock_mixes import check_preset


@dataclass(frozen=True)
class Recipe:
    base_ftype: str
    tensor_types: str  # content of the --tensor-type-file
    n_overrides: int

    def command(
        self,
        model: str,
        output: str,
        types_file: str,
        imatrix: str | None = None,
        threads: int = 0,
        tool: str = "llama-quantize",
    ) -> list[str]:
        cmd = [tool, "--pure"]
        if imatrix:
            cmd += ["--imatrix", imatrix]
        cmd += ["--tensor-type-file", types_file, model, output, self.base_ftype]
        if threads:
            cmd.append(str(threads))
        return cmd

    def command_line(self, *args: str | None, **kwargs: object) -> str:
        return shlex.join(self.command(*args, **kwargs))  # type: ignore[arg-type]


def make_recipe(plan: QuantPlan, base_ftype: str | None = None) -> Recipe:
    """The recipe for ``plan``; ``base_ftype`` (a preset name, checked first) defaults to the
    plan's preset, else its dominant type."""
    base = check_preset(base_ftype, "--base-ftype").name if base_ftype else None
    lines = []
    for t in plan.quantized_tensors():
        if t.name != t.name.lower():
            raise PlanError(
                f"tensor {shown(t.name)}: llama-quantize lowercases patterns; cannot express it"
            )
        lines.append(f"{override_pattern(t.name)}={t.effective.lower()}")
    return Recipe(base or choose_base_ftype(plan), "\n".join(lines) + "\n", len(lines))


@dataclass(frozen=True)
class RecipeRequest:
    """The llama-quantize command that rebuilds the plan in ``plan_file`` for ``model``.

    ``types_file`` (default: ``PLAN.tensor-types.txt`` beside the plan) receives the
    ``--tensor-type-file``; ``output`` (default: ``MODEL-lwq.gguf`` beside the model) is the
    file the command would write; ``base_ftype`` defaults to the plan's preset."""

    model: Path
    plan_file: Path
    types_file: Path | None = None
    output: Path | None = None
    imatrix: Path | None = None
    threads: int = 0
    base_ftype: str | None = None


@dataclass(frozen=True)
class RecipeResult:
    command: tuple[str, ...]
    tensor_type_file: Path
    n_overrides: int
    base_ftype: str

    def to_json(self) -> dict[str, Any]:
        """The ``lwq recipe --json`` object."""
        return {
            "command": list(self.command),
            "tensor_type_file": str(self.tensor_type_file),
            "n_overrides": self.n_overrides,
            "base_ftype": self.base_ftype,
        }


@public_job("recipe")
def export_recipe(
    request: RecipeRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> RecipeResult:
    """Write the ``--tensor-type-file`` and return the command that uses it (instant)."""
    check(cancel)
    r = request
    plan = make_plan(PlanRequest(r.model, plan_file=r.plan_file), cancel=cancel).plan
    recipe = make_recipe(plan, r.base_ftype)
    types_file = r.types_file or r.plan_file.with_suffix(".tensor-types.txt")
    out = r.output or r.model.with_name(r.model.stem + "-lwq.gguf")
    imatrix = None if r.imatrix is None else str(r.imatrix)
    cmd = recipe.command(str(r.model), str(out), str(types_file), imatrix, r.threads)
    check(cancel)
    atomic_write_text(types_file, recipe.tensor_types)
    return RecipeResult(tuple(cmd), types_file, recipe.n_overrides, recipe.base_ftype)
