"""Calibrate the sensitivity proxy with measured KLD (measure, then optimise).

The imatrix-weighted squared error treats a unit of error the same in every tensor; KLD
does not (planner_notes.md). Here each tensor kind × depth group is quantized on its own to a
probe type while every other tensor stays at Q8_0, and the KLD rise over the all-Q8_0 model
(a short run: a few chunks of a calibration text, by default the bundled
``jobs.resources.CALIBRATION_TEXT``, never the text the plan is then evaluated on) is divided by the
proxy's summed error of the probed tensors. That ratio becomes the error factor of every
tensor in the group, so the planner trades bits in units of measured KLD. ExLlamaV2/V3
measure the same way. A calibration holds for one model's tensor data and one imatrix file.

``calibrate(CalibrateRequest(...))`` keeps it in the model's project folder
(``results.project``), reporting one monotone progress over ``Phase.MEASURE`` (the proxy of
the probe types), ``Phase.BASE`` (the base-logits pass) and ``Phase.CALIBRATE`` (the probes).
A cancelled run leaves nothing: no project folder, calibration, cache entry or temp file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..importance.sensitivity import (
    Sensitivity,
    SensitivityRequest,
    cache_sensitivity,
    measure_sensitivity,
)
from ..jobs.arguments import count_option, gpu_layers_option, int_option, threads_option
from ..jobs.atomic import TMP_SUFFIX, atomic_write_text, check_writable_dir
from ..jobs.boundary import public_job
from ..jobs.errors import InputError, OutputError, PlanError
from ..jobs.progress import CancelToken, Phase, Phases, Progress, ProgressSink, check, no_progress
from ..jobs.resources import CALIBRATION_TEXT
from ..modelfile.hashing import model_hash
from ..modelfile.imatrix_file import read_imatrix
from ..modelfile.inventory import ModelInfo, open_model
from ..plan.quant_plan import plan_from_types

#: probe types, the first valid for a whole group is used: one mid-range type for every
#: kind keeps the factors comparable and the KLD response near-linear
PROBES = ("IQ4_NL", "Q4_0", "Q3_K", "Q2_K")
#: ``CalibrateRequest`` defaults: the configuration measured in CHANGELOG
DEFAULT_GROUPS = 3
DEFAULT_CHUNKS = 4
#: the text of the KLD runs when the request names none (never the evaluation excerpt)
DEFAULT_TEXT = CALIBRATION_TEXT


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
    settings: Mapping[str, Any] = field(default_factory=dict)

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

    def to_dict(self) -> dict[str, Any]:
        """The calibration file's content."""
        d = asdict(self)
        d["settings"] = dict(self.settings)
        return d

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

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


@dataclass(frozen=True)
class CalibrateRequest:
    """Calibrate the proxy of ``model`` with ``imatrix``: ``groups`` depth groups per tensor
    kind, ``chunks`` KLD chunks of ``ctx`` tokens per probe on ``text`` (None: the bundled
    calibration text), the proxy on ``max_rows`` sampled rows. The result goes into the
    model's project folder, and to ``copy_to`` as well where given."""

    model: Path
    imatrix: Path
    text: Path | None = None
    groups: int = DEFAULT_GROUPS
    chunks: int = DEFAULT_CHUNKS
    ctx: int = 512
    max_rows: int = 256
    threads: int = 0
    gpu_layers: int = 0
    copy_to: Path | None = None


@dataclass(frozen=True)
class CalibrationRun:
    calibration: Calibration
    path: Path  # where the model's project keeps it
    copy: Path | None  # the request's ``copy_to``, written
    text: Path  # the text the KLD runs used
    seconds: float


def _check_creatable(folder: Path) -> None:
    """``OutputError`` unless ``folder`` exists as a writable folder or can be created."""
    p = folder
    while not p.exists() and p.parent != p:
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: cannot create the project folder ({p} is not writable)")


@dataclass(frozen=True)
class _ProbeSinks:
    """One probe's quantize (first half) and KLD run (second half) as one step of the
    ``CALIBRATE`` count."""

    quantize: ProgressSink
    kld: ProgressSink


def _probe_sinks(sink: ProgressSink, index: int, total: int, label: str) -> _ProbeSinks:
    seen = [0.0]

    def emit(f: float) -> None:
        seen[0] = max(seen[0], f)
        sink(Progress(Phase.CALIBRATE, index + seen[0], total, label))

    return _ProbeSinks(
        quantize=lambda p: emit(0.5 * p.position),
        kld=lambda p: emit(0.5 + 0.5 * (p.fraction if p.phase is Phase.EVAL else 0.0)),
    )


def _as_phase(sink: ProgressSink, phase: Phase) -> ProgressSink:
    return lambda p: sink(replace(p, phase=phase))


@public_job("calibrate")
def calibrate(
    request: CalibrateRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> CalibrationRun:
    """Measure ΔKLD for each (kind, depth group) probe and keep it in the model's project.

    Inputs, the ``copy_to`` folder and the project folder are checked before anything is
    measured; the proxy's cache entry, the base-logits cache and the project are written
    only once every probe has run, so a cancelled run leaves no file anywhere."""
    from ..evaluate.logit_cache import CacheKey, read_key
    from ..evaluate.perplexity import default_cache_dir, kl_divergence, perplexity, text_digest
    from ..plan.quantize import QuantizeRequest, quantize
    from ..results.project import calibration_name, ensure_project, project_path
    from ..results.project_lock import check_unlocked

    check(cancel)
    r = request
    text = r.text if r.text is not None else DEFAULT_TEXT
    if not text.is_file():
        raise InputError(f"{text}: no such text file")
    count_option(r.groups, "--groups", unit="depth group")
    count_option(r.chunks, "--chunks", unit="chunk")
    count_option(r.ctx, "--ctx", unit="token")
    int_option(r.max_rows, "--max-rows", minimum=0, meaning="0 = all rows")
    threads_option(r.threads)
    gpu_layers_option(r.gpu_layers)
    model = open_model(r.model)
    read_imatrix(r.imatrix).check_model(model)
    if r.copy_to is not None:
        check_writable_dir(r.copy_to)  # fail now, not after minutes of measuring
    digest = model_hash(model)
    _check_creatable(project_path(digest))
    check_unlocked(project_path(digest))  # open in the app: refuse now, not after measuring
    t0 = time.monotonic()
    phases = Phases(progress, [(Phase.MEASURE, 2), (Phase.BASE, 1), (Phase.CALIBRATE, 7)])
    sens_request = SensitivityRequest(
        model.path, r.imatrix, r.max_rows, PROBES, use_cache=True, write_cache=False
    )
    sens = measure_sensitivity(
        sens_request, progress=_as_phase(phases.sink(Phase.MEASURE), Phase.MEASURE), cancel=cancel
    )
    check(cancel)
    # the base logits: reused from the cache, else computed into a temp folder inside it
    # and moved in at the end
    folder = default_cache_dir()
    key = CacheKey(digest, text_digest(text), r.ctx, r.chunks, model.n_vocab)
    cached = folder / f"{key.file_stem()}.npz"
    base_sink = _as_phase(phases.sink(Phase.BASE), Phase.BASE)
    base_sink(Progress(Phase.BASE, 0, 1, model.path.name))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".calibrate-", suffix=TMP_SUFFIX, dir=folder))
    except OSError as e:
        raise OutputError(f"{folder}: cannot write the base-logits cache ({e.strerror})") from None
    try:
        ready = cached.is_file() and read_key(cached) == key
        base = cached if ready else work / cached.name
        if not ready:
            perplexity(
                model.path, text, n_ctx=r.ctx, n_chunks=r.chunks, threads=r.threads,
                gpu_layers=r.gpu_layers, base_logits_out=base, progress=base_sink, cancel=cancel,
            )  # fmt: skip
        base_sink(Progress(Phase.BASE, 1, 1, model.path.name))
        q8 = {t.name: "Q8_0" for t in model.tensors if t.quantizable}
        probe_sink = phases.sink(Phase.CALIBRATE)

        def measure(types: dict[str, str], sinks: _ProbeSinks) -> float:
            check(cancel)
            plan = plan_from_types(model, types, source="calibration probe")
            out = work / "probe.gguf"
            quantize(
                QuantizeRequest(model.path, plan, out, imatrix=r.imatrix, threads=r.threads),
                progress=sinks.quantize,
                cancel=cancel,
            )
            k = kl_divergence(
                out, text, base, n_ctx=r.ctx, n_chunks=r.chunks, threads=r.threads,
                gpu_layers=r.gpu_layers, progress=sinks.kld, cancel=cancel,
            )  # fmt: skip
            out.unlink()
            return float(k.stats.kld)

        cal = _calibrate(model, sens, q8, measure, r.groups, probe_sink)
        check(cancel)
        cal = replace(
            cal,
            settings={
                "text": str(text),
                "text_sha256": key.text_sha256,
                "n_ctx": r.ctx,
                "n_chunks": r.chunks,
                "n_groups": r.groups,
                "max_rows": sens.max_rows,
            },
        )
        project = ensure_project(model)
        if project.name != cal.model_hash[:16]:
            raise InputError(
                f"{model.path}: the model changed during calibration; nothing was saved"
            )
        dest = project / calibration_name(cal.imatrix_hash)
        check_unlocked(project)
        cal.save(dest)
        if r.copy_to is not None:
            cal.save(r.copy_to)
        cache_sensitivity(sens_request, sens)
        if not ready:
            with contextlib.suppress(OSError):  # only a cache: keep going without it
                os.replace(base, cached)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return CalibrationRun(cal, dest, r.copy_to, text, time.monotonic() - t0)


def _calibrate(
    model: ModelInfo,
    sens: Sensitivity,
    q8: dict[str, str],
    measure: Callable[[dict[str, str], _ProbeSinks], float],
    n_groups: int,
    progress: ProgressSink,
) -> Calibration:
    todo = groups(model, n_groups)
    total = len(todo) + 1  # the all-Q8_0 baseline is one run too
    label = "baseline Q8_0"
    progress(Progress(Phase.CALIBRATE, 0, total, label))
    baseline = measure(q8, _probe_sinks(progress, 0, total, label))
    progress(Progress(Phase.CALIBRATE, 1, total, label))
    points: list[CalibrationPoint] = []
    for i, (kind, layers) in enumerate(todo):
        names = _members(model, kind, layers)
        probe = next((p for p in PROBES if all(p in sens.tensors[n].error for n in names)), None)
        if probe is None:
            raise PlanError(f"no probe type valid for every {kind} tensor in layers {layers}")
        proxy = sum(sens.tensors[n].error[probe] for n in names)
        where = f"{layers[0]}-{layers[-1]}" if layers else "-"
        label = f"{kind} {where} {probe}"
        progress(Progress(Phase.CALIBRATE, i + 1, total, label))
        sinks = _probe_sinks(progress, i + 1, total, label)
        kld = measure({**q8, **dict.fromkeys(names, probe)}, sinks) - baseline
        points.append(CalibrationPoint(kind, layers, probe, proxy, kld))
        progress(Progress(Phase.CALIBRATE, i + 2, total, label))
    return Calibration(sens.model_hash, sens.imatrix_hash, baseline, tuple(points))
