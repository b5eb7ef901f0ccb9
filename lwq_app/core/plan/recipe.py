"""Export a plan as a reproduce recipe for llama.cpp's own ``llama-quantize``.

The recipe is the base ftype, ``--pure``, the imatrix, and a ``--tensor-type-file`` holding one
anchored, escaped name per quantizable tensor (``^blk\\.0\\.attn_q\\.weight$=q4_k``), so the
native tool writes exactly the plan's types. llama-quantize lowercases each pattern, so names
with capitals cannot be expressed and are refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..jobs.errors import PlanError
from .quant_plan import QuantPlan
from .quantize import choose_base_ftype, override_pattern


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
    lines = []
    for t in plan.quantized_tensors():
        if t.name != t.name.lower():
            raise PlanError(
                f"tensor {t.name}: llama-quantize lowercases patterns; cannot express it"
            )
        lines.append(f"{override_pattern(t.name)}={t.effective.lower()}")
    return Recipe(base_ftype or choose_base_ftype(plan), "\n".join(lines) + "\n", len(lines))
