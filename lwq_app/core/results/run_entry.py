"""Run one entry of the run queue: the core job the app submits for each row of its Run step.

``run_entry`` reads the entry's JSON ``spec`` back into the core's own requests — the plan
checked against the model it is for, the evaluation setting parsed as ``project.json``'s —
runs the quantize, evaluation, benchmark or bench job, and stores what it measured in the
model's results file (``store.record_*``) before it returns, so a result is on disk as soon as
the row says DONE. A quantize returns what the project needs to record the new variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluate.bench import BenchResult, bench
from ..evaluate.multiple_choice import TaskResult, run_tasks
from ..evaluate.perplexity import EvalRequest, KldResult, PerplexityResult, evaluate
from ..jobs.errors import InputError, shown
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress
from ..modelfile.inventory import open_model
from ..plan.quant_plan import plan_from_dict
from ..plan.quantize import QuantizeRequest, QuantizeResult, quantize
from .eval_settings import EvalSettings
from .project import Variant, now_stamp
from .run_queue import JobKind, QueueEntry
from .store import record_bench, record_eval, record_tasks

Measured = KldResult | PerplexityResult | TaskResult | BenchResult


@dataclass(frozen=True)
class EntryResult:
    """What one entry did: the ``model`` file it made or measured, a one-line ``summary``,
    and either the ``quantized`` result (with the plan's name) or the ``measured`` one and
    the ``results_file`` it was stored in."""

    entry_id: str
    kind: JobKind
    model: Path
    summary: str
    quantized: QuantizeResult | None = None
    plan_name: str | None = None
    measured: Measured | None = None
    results_file: Path | None = None

    def variant(self) -> Variant | None:
        """The project's record of the quantized file (None for a measurement)."""
        q = self.quantized
        if q is None:
            return None
        return Variant(
            q.output.stem,
            q.output,
            self.plan_name,
            q.plan.content_hash(),
            q.output.stat().st_size,
            now_stamp(),
        )


def _settings(entry: QueueEntry) -> EvalSettings:
    return EvalSettings.from_json(entry.spec.get("settings"), f"job {entry.title!r}: settings")


def _path(entry: QueueEntry, key: str, optional: bool = False) -> Path | None:
    v = entry.spec.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v:
        raise InputError(f"job {entry.title!r}: field {key!r} must be a file path")
    return Path(v)


def run_entry(
    entry: QueueEntry,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> EntryResult:
    """Run ``entry`` (a child process does the native work: cancel kills it) and store its
    result; every failure is the core job's own error, naming the file."""
    check(cancel)
    model = entry.model
    kind = entry.kind
    if kind is JobKind.QUANTIZE:
        return _quantize(entry, progress, cancel)
    settings = _settings(entry)
    measured: Measured
    if kind is JobKind.EVAL:
        base = _path(entry, "base", optional=True)
        if base is not None and not base.is_file():
            raise InputError(f"{base}: the F16 base model is missing (needed for the KLD)")
        req: EvalRequest = settings.eval_request(model, base)
        measured = evaluate(req, progress=progress, cancel=cancel)
        stored = record_eval(model, measured)
    elif kind is JobKind.TASKS:
        name = entry.spec.get("task")
        req_t = next((r for r in settings.task_requests(model) if r.name == name), None)
        if req_t is None:
            raise InputError(f"job {entry.title!r}: the setting has no benchmark "
                             f"{shown(name, 40)!r}")  # fmt: skip
        measured = run_tasks(req_t, progress=progress, cancel=cancel)
        stored = record_tasks(model, measured)
    elif kind is JobKind.BENCH:
        measured = bench(settings.bench_request(model), progress=progress, cancel=cancel)
        stored = record_bench(model, measured)
    else:  # pragma: no cover - every kind is handled above
        raise InputError(f"job {entry.title!r}: unknown kind {kind!r}")
    return EntryResult(
        entry.id, kind, model, summarize(measured), measured=measured, results_file=stored
    )


def _quantize(entry: QueueEntry, progress: ProgressSink, cancel: CancelToken | None) -> EntryResult:
    spec: dict[str, Any] = entry.spec
    output = _path(entry, "output")
    assert output is not None
    info = open_model(entry.model)
    plan = plan_from_dict(info, spec.get("plan"), source=f"job {entry.title!r}: plan")
    imatrix = _path(entry, "imatrix", optional=True)
    plan_name = spec.get("plan_name")
    r = quantize(
        QuantizeRequest(info.path, plan, output, imatrix), progress=progress, cancel=cancel
    )
    return EntryResult(
        entry.id,
        JobKind.QUANTIZE,
        r.output,
        f"wrote {r.output.name}: {r.tensor_bytes / 1e6:.1f} MB of tensors, "
        f"{r.plan.bpw:.2f} bpw, in {r.seconds:.1f} s",
        quantized=r,
        plan_name=plan_name if isinstance(plan_name, str) else None,
    )


def summarize(m: Measured) -> str:
    """A one-line account of a measurement, for the row of the queue it ended."""
    if isinstance(m, KldResult):
        s = m.stats
        return (
            f"PPL {s.ppl:.4f} ± {s.ppl_unc:.4f}, KLD {s.kld:.6f} ± {s.kld_unc:.6f}, "
            f"same top {100 * s.same_top:.2f} % ({m.perplexity.n_chunks} chunks)"
        )
    if isinstance(m, PerplexityResult):
        return f"PPL {m.ppl:.4f} ± {m.ppl_unc:.4f} ({m.n_chunks} chunks)"
    if isinstance(m, TaskResult):
        return f"{m.name} {m.score:.2f} ± {m.stderr:.2f} % ({m.n_tasks} tasks)"
    return ", ".join(f"{r.test_name} {r.avg_ts:.2f} ± {r.stddev_ts:.2f} t/s" for r in m.records)
