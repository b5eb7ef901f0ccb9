"""The predicted quality cost of a plan: the proxy ``plan --auto`` minimises, in KLD units
where a calibration says how.

Calibrated, a plan's predicted mean KLD vs F16 is the all-Q8_0 model's measured KLD plus each
tensor's ΔKLD: ``baseline_kld + Σ_t max(0, f_t·(e_t(type) − e_t(Q8_0)))``, with the error
factors ``Calibration.factors`` gives ``auto_plan`` (measured ΔKLD per unit of proxy error of
the tensor's kind × depth group) and the errors of the sensitivity table. A tensor above
Q8_0 (F16) adds nothing rather than subtracting: the calibration measured rises above Q8_0
only. Uncalibrated, the figure is the raw proxy ``Σ_t e_t(type)``, labelled as such: its
units are the proxy's, comparable between plans of one model and imatrix only.

F16/F32/BF16 without a measured error count as 0; any other type without one (outside the
measured candidates) counts 0 too and the tensor is listed in ``unmeasured``. Per-tensor costs
are tabulated once (``KldPredictor``), so a prediction is one lookup per tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..importance.sensitivity import Sensitivity
from ..jobs.errors import InputError
from ..modelfile.inventory import ModelInfo
from ..plan.quant_plan import QuantPlan
from .calibration import Calibration

#: the reference type of a calibration (every probe's other tensors are Q8_0)
REFERENCE = "Q8_0"
_FLOATS = ("F16", "F32", "BF16")
CALIBRATED_LABEL = "predicted KLD"
PROXY_LABEL = "proxy (uncalibrated)"


@dataclass(frozen=True)
class KldPrediction:
    """A plan's predicted KLD (``calibrated``) or raw proxy; ``label`` says which;
    ``unmeasured``: tensors whose type has no measured error (counted as 0)."""

    value: float
    calibrated: bool
    label: str
    unmeasured: tuple[str, ...] = ()


class KldPredictor:
    """Predictions for plans of ``model`` from its ``sensitivity`` and, where measured, the
    ``calibration`` of that sensitivity's model and imatrix (``InputError`` for another's).
    A calibration needs ``model``: its factors are per kind × depth group of its tensors."""

    def __init__(
        self,
        sensitivity: Sensitivity,
        calibration: Calibration | None,
        model: ModelInfo | None = None,
    ) -> None:
        if calibration is not None and model is None:
            raise InputError("a calibrated KLD prediction needs the model (its factors' groups)")
        if calibration is not None and (
            calibration.model_hash != sensitivity.model_hash
            or calibration.imatrix_hash != sensitivity.imatrix_hash
        ):
            raise InputError(
                "the calibration was measured on another model or imatrix than the sensitivity "
                f"(model {calibration.model_hash[:12]}…/{sensitivity.model_hash[:12]}…, imatrix "
                f"{calibration.imatrix_hash[:12]}…/{sensitivity.imatrix_hash[:12]}…)"
            )
        self.calibration = calibration
        self.calibrated = calibration is not None
        self.label = CALIBRATED_LABEL if self.calibrated else PROXY_LABEL
        self.baseline = calibration.baseline_kld if calibration is not None else 0.0
        factors = None if calibration is None or model is None else calibration.factors(model)
        self._costs: dict[str, dict[str, float]] = {
            name: _costs(s.error, None if factors is None else float(factors.get(name, 1.0)))
            for name, s in sensitivity.tensors.items()
        }

    def tensor_cost(self, name: str, type: str) -> float | None:
        """The tensor's contribution at ``type`` (an effective type): calibrated ΔKLD over
        Q8_0, else the raw proxy error; None if that type was not measured for it."""
        costs = self._costs.get(name)
        return None if costs is None else costs.get(type)

    def predict(self, plan: QuantPlan) -> KldPrediction:
        total = self.baseline
        unmeasured: list[str] = []
        costs = self._costs
        for t in plan.tensors:
            if not t.quantizable:
                continue
            c = costs.get(t.name)
            v = None if c is None else c.get(t.effective)
            if v is None:
                unmeasured.append(t.name)
            else:
                total += v
        return KldPrediction(max(0.0, total), self.calibrated, self.label, tuple(unmeasured))

    def delta(self, plan_a: QuantPlan, plan_b: QuantPlan) -> float:
        """Predicted change from ``plan_a`` to ``plan_b`` (positive: ``plan_b`` is worse),
        summed over the tensors whose effective type differs; unmeasured types count 0."""
        d = 0.0
        b = plan_b.effective_types()
        for t in plan_a.tensors:
            other = b.get(t.name)
            if t.quantizable and other is not None and other != t.effective:
                d += (self.tensor_cost(t.name, other) or 0.0) - (
                    self.tensor_cost(t.name, t.effective) or 0.0
                )
        return d


def _costs(error: Mapping[str, float], factor: float | None) -> dict[str, float]:
    """Type -> cost of one tensor: the raw error (``factor`` None) or its calibrated ΔKLD."""
    if factor is None:
        out = {k: float(v) for k, v in error.items()}
    else:
        ref = float(error.get(REFERENCE, 0.0))
        out = {k: max(0.0, factor * (float(v) - ref)) for k, v in error.items()}
    for k in _FLOATS:
        out.setdefault(k, 0.0)
    return out


def predict_kld(
    plan: QuantPlan,
    sensitivity: Sensitivity,
    calibration: Calibration | None = None,
    model: ModelInfo | None = None,
) -> KldPrediction:
    """``KldPredictor(sensitivity, calibration, model).predict(plan)``."""
    return KldPredictor(sensitivity, calibration, model).predict(plan)
