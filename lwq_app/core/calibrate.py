"""Calibrate the sensitivity proxy with measured KLD (measure, then optimise).

The imatrix-weighted squared error treats a unit of error the same in every tensor; KLD
does not (planner_notes.md). Here each tensor kind × depth group is quantized on its own to a
probe type while every other tensor stays at Q8_0, and the KLD rise over the all-Q8_0 model
(a short run: a few chunks of the evaluation text) is divided by the proxy's summed error of
the probed tensors. That ratio becomes the error factor of every tensor in the group, so the
planner trades bits in units of measured KLD. ExLlamaV2/V3 measure the same way.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, PlanError
from .fileio import atomic_write_text
from .model import ModelInfo, open_model
from .plan import plan_from_types
from .progress import CancelToken, Progress, ProgressSink, Stage
from .sensitivity import Sensitivity

#: probe types, the first valid for a whole group is used: one mid-range type for every
#: kind keeps the factors comparable and the KLD response near-linear
PROBES = ("IQ4_NL", "Q4_0", "Q3_K", "Q2_K")


@dataclass(frozen=True)
class CalibrationPoint:
    kind: str
    layers: tuple[int, ...]  # empty for tensors outside the layers (token_embd, output)
    probe: str
    proxy: float
    kld: float  # KLD of the probed model minus the all-Q8_0 model's


@dataclass(frozen=True)
class Calibration:
    model_hash: str
    imatrix_hash: str
    baseline_kld: float
    points: tuple[CalibrationPoint, ...]

    def factors(self, model: ModelInfo) -> dict[str, float]:
        """Error factor per tensor: measured ΔKLD per unit of proxy error of its group."""
        out = {}
        for p in self.points:
            f = max(p.kld, 1e-9) / p.proxy if p.proxy > 0 else 1.0
            for t in _members(model, p.kind, p.layers):
                out[t] = f
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(asdict(self), indent=1))

    @staticmethod
    def load(path: str | Path) -> Calibration:
        try:
            d = json.loads(Path(path).read_text())
            pts = tuple(
                CalibrationPoint(p["kind"], tuple(p["layers"]), p["probe"], p["proxy"], p["kld"])
                for p in d["points"]
            )
            return Calibration(d["model_hash"], d["imatrix_hash"], d["baseline_kld"], pts)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not an lwq calibration ({type(e).__name__}: {e})") from None


def _members(model: ModelInfo, kind: str, layers: tuple[int, ...]) -> list[str]:
    return [
        t.name
        for t in model.tensors
        if t.quantizable and t.kind == kind and ((t.layer in layers) if layers else t.layer is None)
    ]


def groups(model: ModelInfo, n_groups: int) -> list[tuple[str, tuple[int, ...]]]:
    """(kind, layers) probes: every layer kind in ``n_groups`` depth groups, plus the rest."""
    kinds = sorted({t.kind for t in model.tensors if t.quantizable and t.layer is not None})
    n = model.n_layer
    cuts = [round(i * n / n_groups) for i in range(n_groups + 1)]
    out = [(k, tuple(range(cuts[g], cuts[g + 1]))) for k in kinds for g in range(n_groups)]
    out += [(t.kind, ()) for t in model.tensors if t.quantizable and t.layer is None]
    return out


Measure = Callable[[dict[str, str]], float]


def calibrate(
    model_path: str | Path,
    imatrix_path: str | Path,
    text: str | Path,
    sens: Sensitivity,
    *,
    n_groups: int = 5,
    n_chunks: int = 4,
    threads: int = 0,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> Calibration:
    """Measure ΔKLD for each (kind, depth group) probe; quantize and KLD run out of process."""
    from .evaluate import cached_base_logits, kl_divergence
    from .quantize import quantize

    model = open_model(model_path)
    base, _ = cached_base_logits(model.path, text, n_chunks=n_chunks, threads=threads)
    q8 = {t.name: "Q8_0" for t in model.tensors if t.quantizable}
    with tempfile.TemporaryDirectory() as tmp:

        def measure(types: dict[str, str]) -> float:
            plan = plan_from_types(model, types, source="calibration probe")
            out = Path(tmp) / "probe.gguf"
            quantize(model, plan, out, imatrix_path=imatrix_path, threads=threads, cancel=cancel)
            r = kl_divergence(out, text, base, n_chunks=n_chunks, threads=threads, cancel=cancel)
            out.unlink()
            return float(r.stats.kld)

        return _calibrate(model, sens, q8, measure, n_groups, progress)


def _calibrate(
    model: ModelInfo,
    sens: Sensitivity,
    q8: dict[str, str],
    measure: Measure,
    n_groups: int,
    progress: ProgressSink | None,
) -> Calibration:
    todo = groups(model, n_groups)
    baseline = measure(q8)
    points: list[CalibrationPoint] = []
    for i, (kind, layers) in enumerate(todo):
        names = _members(model, kind, layers)
        probe = next((p for p in PROBES if all(p in sens.tensors[n].error for n in names)), None)
        if probe is None:
            raise PlanError(f"no probe type valid for every {kind} tensor in layers {layers}")
        proxy = sum(sens.tensors[n].error[probe] for n in names)
        kld = measure({**q8, **dict.fromkeys(names, probe)}) - baseline
        points.append(CalibrationPoint(kind, layers, probe, proxy, kld))
        if progress is not None:
            progress(Progress(Stage.EVAL, i + 1, len(todo), f"{kind} {layers[:1]}…"))
    return Calibration(sens.model_hash, sens.imatrix_hash, baseline, tuple(points))


def to_dict(c: Calibration) -> dict[str, Any]:
    return asdict(c)
