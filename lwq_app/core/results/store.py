"""Per-variant results store: every evaluation, task score and speed test of one GGUF.

Results live beside the model as ``MODEL.gguf.lwq-results.json``, so a set of variants can
be reported on later. Each file names exactly what was measured: the model's tensor-data
hash (cached against size + mtime, a re-quantized file is re-hashed), its plan and imatrix
(from the quantize sidecar when lwq made it), the text hash, and lwq/llama.cpp versions.
A new result replaces an older one with the same key (same text/ctx/chunks, same task file).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..evaluate.bench import BenchRecord, BenchResult
from ..evaluate.multiple_choice import TaskResult
from ..evaluate.perplexity import KldResult, PerplexityResult
from ..jobs.atomic import atomic_write_text
from ..jobs.errors import InputError
from ..modelfile.hashing import model_hash, sha256_file
from ..modelfile.inventory import open_model

SUFFIX = ".lwq-results.json"
FORMAT = "lwq-results"


@dataclass(frozen=True)
class Variant:
    """The file the results are of: its identity when they were recorded."""

    file: str
    size: int
    mtime_ns: int
    tensor_data_sha256: str
    tensor_data_bytes: int
    n_params: int
    plan_sha256: str | None = None  # from the quantize sidecar, when lwq made the file
    imatrix: str | None = None
    base_ftype: str | None = None


@dataclass(frozen=True)
class Versions:
    """The lwq and llama-cpp-python that recorded the results."""

    lwq: str
    llama_cpp_python: str


@dataclass(frozen=True)
class EvalRecord:
    """A stored evaluation (key: text hash, ctx and chunks)."""

    key: str
    recorded: str  # UTC, ISO 8601
    result: PerplexityResult | KldResult

    @property
    def kind(self) -> str:
        """``kld`` or ``ppl``, as the file names it."""
        return "kld" if isinstance(self.result, KldResult) else "ppl"


@dataclass(frozen=True)
class TaskRecord:
    """A stored benchmark score (key: name, task-file hash, task count); ``result.correct``
    is not stored, so it is empty."""

    key: str
    recorded: str
    result: TaskResult
    file_sha256: str


@dataclass(frozen=True)
class SpeedRecord:
    """A stored speed test (key: test name, threads, GPU layers)."""

    key: str
    recorded: str
    record: BenchRecord


@dataclass(frozen=True)
class StoredResults:
    """Everything recorded for one model file (empty when nothing was)."""

    path: Path  # the results file (it may not exist)
    variant: Variant | None = None
    versions: Versions | None = None
    evals: tuple[EvalRecord, ...] = ()
    tasks: tuple[TaskRecord, ...] = ()
    bench: tuple[SpeedRecord, ...] = ()


Rec = TypeVar("Rec", EvalRecord, TaskRecord, SpeedRecord)


def latest(rows: Iterable[Rec], pred: Callable[[Rec], bool] | None = None) -> Rec | None:
    """The most recently recorded of ``rows`` (those ``pred`` accepts), None if none."""
    items = [r for r in rows if pred is None or pred(r)]
    return max(items, key=lambda r: r.recorded) if items else None


def results_path(model: Path) -> Path:
    return model.with_name(model.name + SUFFIX)


def _read_raw(p: Path) -> dict[str, Any]:
    if not p.exists():
        return {"format": FORMAT, "eval": {}, "tasks": {}, "bench": {}}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: unreadable results file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{p}: not an lwq results file")
    return data


T = TypeVar("T")


def _rows(
    p: Path, data: dict[str, Any], section: str, make: Callable[[str, Any], T]
) -> tuple[T, ...]:
    out = []
    entries = data.get(section) or {}
    if not isinstance(entries, dict):
        raise InputError(f"{p}: damaged results file (section {section!r} is not a table)")
    for key, value in entries.items():
        try:
            out.append(make(key, value))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(
                f"{p}: damaged results file (entry {section}/{key}: {type(e).__name__} {e})"
            ) from None
    return tuple(out)


def _eval_row(key: str, d: dict[str, Any]) -> EvalRecord:
    kind = d["kind"]
    result: PerplexityResult | KldResult
    result = KldResult.from_json(d) if kind == "kld" else PerplexityResult.from_json(d)
    return EvalRecord(key, str(d.get("recorded", "")), result)


def _task_row(key: str, d: dict[str, Any]) -> TaskRecord:
    fields = {k: d[k] for k in TaskResult.__dataclass_fields__ if k != "correct"}
    return TaskRecord(
        key, str(d.get("recorded", "")), TaskResult(**fields, correct=()), d["file_sha256"]
    )


def _speed_row(key: str, d: dict[str, Any]) -> SpeedRecord:
    return SpeedRecord(key, str(d.get("recorded", "")), BenchRecord.from_json(d))


def load_results(model: str | Path) -> StoredResults:
    """The stored results of ``model`` (empty if none); ``InputError`` naming the results
    file if it is unreadable or damaged."""
    p = results_path(Path(model))
    data = _read_raw(p)
    variant = versions = None
    try:
        if isinstance(data.get("variant"), dict):
            v = data["variant"]
            variant = Variant(**{k: v[k] for k in Variant.__dataclass_fields__ if k in v})
        if isinstance(data.get("versions"), dict):
            versions = Versions(**data["versions"])
    except TypeError as e:
        raise InputError(f"{p}: damaged results file ({e})") from None
    return StoredResults(
        path=p,
        variant=variant,
        versions=versions,
        evals=_rows(p, data, "eval", _eval_row),
        tasks=_rows(p, data, "tasks", _task_row),
        bench=_rows(p, data, "bench", _speed_row),
    )


def _versions() -> dict[str, str]:
    from ... import __version__
    from ..engine import llama_cpp_version

    return {"lwq": __version__, "llama_cpp_python": llama_cpp_version()}


def _variant(model: Path, old: dict[str, Any]) -> dict[str, Any]:
    """Identity of the file: cached hash unless size or mtime changed; plan from the sidecar."""
    st = model.stat()
    prev = old.get("variant", {})
    info = open_model(model)
    if prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
        digest = prev["tensor_data_sha256"]
    else:
        digest = model_hash(info)
    v = asdict(
        Variant(
            file=model.name,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            tensor_data_sha256=digest,
            tensor_data_bytes=info.tensor_data_bytes,
            n_params=info.n_params,
        )
    )
    sidecar = model.with_name(model.name + ".lwq.json")
    if sidecar.exists():
        with contextlib.suppress(OSError, ValueError):  # a broken sidecar only loses the plan
            side = json.loads(sidecar.read_text(encoding="utf-8"))
            v.update(
                plan_sha256=side.get("plan_sha256"),
                imatrix=side.get("imatrix"),
                base_ftype=side.get("base_ftype"),
            )
    return v


def _store(model: Path, section: str, key: str, value: dict[str, Any]) -> Path:
    p = results_path(model)
    data = _read_raw(p)
    data["variant"] = _variant(model, data)
    data["versions"] = _versions()
    value = {**value, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    data.setdefault(section, {})[key] = value
    atomic_write_text(p, json.dumps(data, indent=1, default=str) + "\n")
    return p


def record_eval(model: str | Path, result: PerplexityResult | KldResult) -> Path:
    """Store an evaluation (keyed by text, ctx and chunks)."""
    ppl = result.perplexity if isinstance(result, KldResult) else result
    key = f"{ppl.text_sha256[:16]}-c{ppl.n_ctx}-n{ppl.n_chunks}"
    body = result.to_json()
    body["kind"] = "kld" if isinstance(result, KldResult) else "ppl"
    return _store(Path(model), "eval", key, body)


def record_tasks(model: str | Path, result: TaskResult) -> Path:
    """Store a benchmark score (keyed by benchmark name, task-file hash and task count)."""
    digest = sha256_file(result.file)
    body = result.to_json()
    body["file_sha256"] = digest
    return _store(Path(model), "tasks", f"{result.name}-{digest[:12]}-{result.n_tasks}", body)


def record_bench(model: str | Path, records: BenchResult | Sequence[BenchRecord]) -> Path:
    """Store llama-bench-style records (keyed by test name, threads and GPU layers)."""
    p = Path(model)
    rows = records.records if isinstance(records, BenchResult) else records
    for r in rows:
        _store(p, "bench", f"{r.test_name}-t{r.n_threads}-ngl{r.n_gpu_layers}", r.to_json())
    return results_path(p)
