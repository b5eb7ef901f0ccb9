"""Calibrate the sensitivity proxy with measured KLD (measure, then optimise).

The imatrix-weighted squared error treats a unit of error the same in every tensor; KLD
does not (planner_notes.md). Here each tensor kind × depth group is quantized on its own to a
probe type while every other tensor stays at Q8_0, and the KLD rise over the all-Q8_0 model
(a short run: a few chunks of a calibration text, by default the bundled
``corpus.CALIBRATION_TEXT``, never the text the plan is then evaluated on) is divided by the
proxy's summed error of the probed tensors. That ratio becomes the error factor of every
tensor in the group, so the planner trades bits in units of measured KLD. ExLlamaV2/V3
measure the same way. A calibration holds for one model's tensor data and one imatrix file;
``lwq calibrate`` keeps it in the model's project folder (``project.py``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
#: ``calibrate_into_project`` defaults: the configuration measured in CHANGELOG
DEFAULT_GROUPS = 3
DEFAULT_CHUNKS = 4


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
    #: how it was measured (text and its sha256, ctx, chunks, groups, max_rows); informative
    settings: dict[str, Any] = field(default_factory=dict)

    def factor(self, p: CalibrationPoint) -> float:
        return max(p.kld, 1e-9) / p.proxy if p.proxy > 0 else 1.0

    def factors(self, model: ModelInfo) -> dict[str, float]:
        """Error factor per tensor: measured ΔKLD per unit of proxy error of its group."""
        out = {}
        for p in self.points:
            f = self.factor(p)
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
            settings = dict(d.get("settings") or {})
            return Calibration(d["model_hash"], d["imatrix_hash"], d["baseline_kld"], pts, settings)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{path}: not an lwq calibration ({type(e).__name__}: {e})") from None

    def check(self, path: str | Path, model_hash: str, imatrix_hash: str) -> None:
        """Raise ``InputError`` naming ``path`` unless measured on this model and imatrix."""
        if self.model_hash != model_hash:
            raise InputError(
                f"{path}: calibration was measured on another model (tensor data "
                f"{self.model_hash[:12]}…, this model {model_hash[:12]}…)"
            )
        if self.imatrix_hash != imatrix_hash:
            raise InputError(
                f"{path}: calibration was measured with {_imatrix_label(self.imatrix_hash)}, "
                f"this plan uses {_imatrix_label(imatrix_hash)} "
                "(run lwq calibrate with this imatrix, or pass --no-calibration)"
            )


def _imatrix_label(digest: str) -> str:
    return "no imatrix" if digest == "none" else f"imatrix {digest[:12]}…"


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
    n_ctx: int = 512,
    threads: int = 0,
    gpu_layers: int = 0,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> Calibration:
    """Measure ΔKLD for each (kind, depth group) probe; quantize and KLD run out of process."""
    from .evaluate import cached_base_logits, kl_divergence, text_digest
    from .quantize import quantize

    model = open_model(model_path)
    base, _ = cached_base_logits(
        model.path, text, n_ctx=n_ctx, n_chunks=n_chunks, threads=threads,
        gpu_layers=gpu_layers, cancel=cancel,
    )  # fmt: skip
    q8 = {t.name: "Q8_0" for t in model.tensors if t.quantizable}
    with tempfile.TemporaryDirectory() as tmp:

        def measure(types: dict[str, str]) -> float:
            plan = plan_from_types(model, types, source="calibration probe")
            out = Path(tmp) / "probe.gguf"
            quantize(model, plan, out, imatrix_path=imatrix_path, threads=threads, cancel=cancel)
            r = kl_divergence(
                out, text, base, n_ctx=n_ctx, n_chunks=n_chunks, threads=threads,
                gpu_layers=gpu_layers, cancel=cancel,
            )  # fmt: skip
            out.unlink()
            return float(r.stats.kld)

        cal = _calibrate(model, sens, q8, measure, n_groups, progress)
    settings = {
        "text": str(text),
        "text_sha256": text_digest(Path(text)),
        "n_ctx": n_ctx,
        "n_chunks": n_chunks,
        "n_groups": n_groups,
        "max_rows": sens.max_rows,
    }
    return replace(cal, settings=settings)


@dataclass(frozen=True)
class CalibrationRun:
    calibration: Calibration
    path: Path  # where the model's project keeps it
    seconds: float


def calibrate_into_project(
    model_path: str | Path,
    imatrix_path: str | Path,
    text: str | Path | None = None,
    *,
    n_groups: int = DEFAULT_GROUPS,
    n_chunks: int = DEFAULT_CHUNKS,
    n_ctx: int = 512,
    max_rows: int = 256,
    threads: int = 0,
    gpu_layers: int = 0,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> CalibrationRun:
    """Proxy of the probe types, then ``calibrate``; saved in the model's project folder.

    ``text`` defaults to the bundled calibration text, never the evaluation excerpt: the
    factors must not be fitted on the text a plan is judged on. Inputs and the project
    folder are checked before anything is measured; a cancelled run saves nothing.
    """
    from .corpus import CALIBRATION_TEXT
    from .imatrix import read_imatrix
    from .project import calibration_name, ensure_project
    from .sensitivity import measure_sensitivity

    text_p = Path(text) if text is not None else CALIBRATION_TEXT
    if not text_p.is_file():
        raise InputError(f"{text_p}: no such text file")
    if min(n_groups, n_chunks, n_ctx) < 1:
        raise InputError("calibration needs at least 1 depth group, 1 chunk and 1 token of ctx")
    model = open_model(model_path)
    read_imatrix(imatrix_path).check_model(model)
    folder = ensure_project(model)  # an unwritable data folder fails now, not after the run
    t0 = time.monotonic()
    sens = measure_sensitivity(
        model.path, imatrix_path, max_rows=max_rows, types=PROBES, progress=progress,
        cancel=cancel,
    )  # fmt: skip
    cal = calibrate(
        model.path, imatrix_path, text_p, sens, n_groups=n_groups, n_chunks=n_chunks,
        n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers, progress=progress, cancel=cancel,
    )  # fmt: skip
    if folder.name != cal.model_hash[:16]:
        raise InputError(f"{model.path}: the model changed during calibration; nothing was saved")
    dest = folder / calibration_name(cal.imatrix_hash)
    cal.save(dest)
    return CalibrationRun(cal, dest, time.monotonic() - t0)


def _calibrate(
    model: ModelInfo,
    sens: Sensitivity,
    q8: dict[str, str],
    measure: Measure,
    n_groups: int,
    progress: ProgressSink | None,
) -> Calibration:
    todo = groups(model, n_groups)
    total = len(todo) + 1  # the all-Q8_0 baseline is one run too
    if progress is not None:
        progress(Progress(Stage.EVAL, 0, total, "baseline Q8_0"))
    baseline = measure(q8)
    if progress is not None:
        progress(Progress(Stage.EVAL, 1, total, "baseline Q8_0"))
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
            where = f"{layers[0]}-{layers[-1]}" if layers else "-"
            progress(Progress(Stage.EVAL, i + 2, total, f"{kind} {where} {probe}"))
    return Calibration(sens.model_hash, sens.imatrix_hash, baseline, tuple(points))


def to_dict(c: Calibration) -> dict[str, Any]:
    return asdict(c)
