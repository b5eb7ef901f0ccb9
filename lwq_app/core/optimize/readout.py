"""What a plan costs, in the figures the plan editor shows while the user drags: the file on
disk (``plan.file_size``), its tensor data and bits per weight, the fit on the project's
target (``evaluate.plan_fit``), the stock mix nearest in file size and the predicted KLD.

``ReadoutContext`` does everything that does not depend on the plan once (the file layout,
every stock mix's file size, the predictor's tables), so ``readout`` is one pass over the
plan's tensors per figure: well within a frame on a model of hundreds of tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..evaluate.targets import MixFit, TargetFit, plan_fit
from ..modelfile.inventory import ModelInfo
from ..plan.file_size import FileSize, file_layout
from ..plan.quant_plan import QuantPlan, writable_presets
from .prediction import KldPrediction, KldPredictor


@dataclass(frozen=True)
class PlanReadout:
    """The readouts of one plan. ``nearest_delta_bytes``: this plan's file minus the nearest
    stock mix's (signed); ``fit`` None without a target, ``kld`` None without a predictor."""

    file_size: FileSize
    tensor_bytes: int
    bpw: float
    fit: MixFit | None
    nearest_preset: str
    nearest_delta_bytes: int
    kld: KldPrediction | None


class ReadoutContext:
    """Readouts of plans of ``model`` quantized with (``with_imatrix``) the ``imatrix`` file
    (its path goes into the file's metadata), on the target of ``fit``, predicted by
    ``predictor``. ``output``: the file the plan will be written to (None: sizes are the
    upper bound ``predict_file_size`` gives for any name)."""

    def __init__(
        self,
        model: ModelInfo,
        *,
        with_imatrix: bool,
        fit: TargetFit | None = None,
        predictor: KldPredictor | None = None,
        imatrix: Path | None = None,
        output: Path | None = None,
    ) -> None:
        self.model, self.with_imatrix = model, with_imatrix
        self.fit, self.predictor = fit, predictor
        self._layout = file_layout(model, imatrix=imatrix, output=output)
        self._n_params = max(1, model.n_params)
        #: every stock mix that can be written with these inputs (the rule of
        #: ``auto_plan.nearest_preset``), kept for diffs against the nearest
        self._preset_plans: dict[str, QuantPlan] = writable_presets(model, with_imatrix)
        #: (preset, file bytes) of each of them
        self.presets: tuple[tuple[str, int], ...] = tuple(
            (name, self.file_size(ref).total) for name, ref in self._preset_plans.items()
        )

    def preset_plan(self, name: str) -> QuantPlan:
        """The stock mix ``name`` as these inputs write it (one of ``presets``)."""
        return self._preset_plans[name]

    def file_size(self, plan: QuantPlan) -> FileSize:
        """``PlanError`` for a plan of another model."""
        return self._layout.plan_size(plan, self.model.path.name)

    def nearest(self, file_bytes: int) -> tuple[str, int]:
        """The stock mix nearest to a file of ``file_bytes``, and ``file_bytes`` minus its."""
        name, size = min(self.presets, key=lambda p: abs(p[1] - file_bytes))
        return name, file_bytes - size

    def readout(self, plan: QuantPlan) -> PlanReadout:
        """Every figure of ``plan``; ``PlanError`` for a plan of another model."""
        fs = self.file_size(plan)
        name, delta = self.nearest(fs.total)
        return PlanReadout(
            file_size=fs,
            tensor_bytes=fs.tensor_data,
            bpw=fs.tensor_data * 8 / self._n_params,
            fit=None if self.fit is None else plan_fit(self.fit, plan),
            nearest_preset=name,
            nearest_delta_bytes=delta,
            kld=None if self.predictor is None else self.predictor.predict(plan),
        )
