"""The quantize job: write a GGUF with exactly a plan's per-tensor types, through llama.cpp.

``llama_model_quantize`` runs in a child process with ``pure=true`` and one anchored, escaped
``tt_overrides`` pattern per quantizable tensor, so no mix rule interferes; the imatrix goes
in as llama.cpp's C array. Output goes to a temp file (``jobs.atomic.atomic_output``) that is
renamed only after the written types and sizes were checked against the plan; cancel or
failure leaves no file. The plan is
kept beside the GGUF as ``<out>.lwq.json``, tied to it by ``lwq.plan.sha256`` in the GGUF.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.arguments import threads_option
from ..jobs.atomic import atomic_output, atomic_write_text, check_free_space, check_writable_dir
from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import ImatrixError, InputError, JobFailed, OutputError, PlanError
from ..jobs.progress import (
    CancelToken,
    Phase,
    Phases,
    Progress,
    ProgressSink,
    check,
    no_progress,
)
from ..modelfile.hashing import tensor_data_hash
from ..modelfile.imatrix_file import Imatrix, read_imatrix
from ..modelfile.inventory import ModelInfo, open_model
from ..modelfile.type_catalog import TYPES
from .quant_plan import QuantPlan
from .stock_mixes import PRESETS, check_preset

SIDECAR_SUFFIX = ".lwq.json"
_META = re.compile(r"([\\^$.|?*+()\[\]{}])")
KV_PLAN_HASH = "lwq.plan.sha256"
KV_PLAN_FILE = "lwq.plan.file"
KV_VERSION = "lwq.version"
KV_IMATRIX_FILE = "quantize.imatrix.file"
KV_IMATRIX_DATASET = "quantize.imatrix.dataset"
KV_IMATRIX_ENTRIES = "quantize.imatrix.entries_count"
KV_IMATRIX_CHUNKS = "quantize.imatrix.chunks_count"


@dataclass(frozen=True)
class QuantizeResult:
    output: Path
    sidecar: Path
    plan: QuantPlan
    base_ftype: str
    n_overrides: int
    tensor_bytes: int
    tensor_data_sha256: str | None  # only with hash_output=True (it re-reads the whole file)
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """What ``lwq quantize --json`` prints."""
        return {
            "output": str(self.output),
            "sidecar": str(self.sidecar),
            "tensor_bytes": self.tensor_bytes,
            "bpw": self.plan.bpw,
            "base_ftype": self.base_ftype,
            "n_overrides": self.n_overrides,
            "tensor_data_sha256": self.tensor_data_sha256,
            "seconds": self.seconds,
        }


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + SIDECAR_SUFFIX)


def override_pattern(name: str) -> str:
    """An exact, anchored regex for one tensor name (std::regex ECMAScript syntax).

    Only ECMAScript metacharacters are escaped: ``blk.0.attn_q.weight`` ->
    ``^blk\\.0\\.attn_q\\.weight$``.
    """
    return "^" + _META.sub(r"\\\1", name) + "$"


def choose_base_ftype(plan: QuantPlan) -> str:
    """The llama_ftype recorded in the file: the plan's preset, else its dominant quantized type.

    Overrides only apply when the base type is quantized, so an all-float plan is the only
    case that gets a float ftype.
    """
    if plan.preset is not None:
        return plan.preset
    weight: dict[str, int] = {}
    for t in plan.quantized_tensors():
        if TYPES[t.effective].quantized:
            weight[t.effective] = weight.get(t.effective, 0) + t.n_params
    if not weight:
        return "F16"
    dominant = max(sorted(weight), key=lambda k: weight[k])
    for p in PRESETS.values():  # first preset with that default type (Q4_K_S before Q4_K_M)
        if p.default_type == dominant and p.name != "Q2_K_S":
            return p.name
    return "Q8_0"


def validate_job(
    model: ModelInfo, plan: QuantPlan, imatrix: Imatrix | None, base_ftype: str, out: Path
) -> None:
    """Every check that can fail before any native work starts."""
    if plan.model_fingerprint != model.fingerprint():
        raise PlanError(
            f"plan is for another model (fingerprint {plan.model_fingerprint}, "
            f"{model.path.name} is {model.fingerprint()})"
        )
    for t in plan.quantized_tensors():
        src = model.tensor(t.name).type
        if t.effective != src and TYPES[src].quantized:
            raise InputError(
                f"{model.path}: tensor {t.name} is already quantized ({src}); "
                f"llama.cpp will not requantize it: run `lwq upcast` first"
            )
    needs = plan.needs_imatrix(base_ftype)
    if needs and imatrix is None:
        t = plan[needs[0]]
        raise PlanError(
            f"type {t.effective} of tensor {t.name} requires an importance matrix "
            f"({len(needs)} tensor(s) need one): pass --imatrix"
        )
    if imatrix is not None:
        imatrix.check_model(model, needs)
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; the output must be a file name (….gguf)")
    if out.resolve() in {p.resolve() for p in model.paths}:
        raise OutputError(f"{out}: output would overwrite the input model")
    check_writable_dir(out)
    check_free_space(out, plan.size_bytes + (8 << 20))


@dataclass(frozen=True)
class QuantizeRequest:
    """Quantize ``model`` with ``plan`` into ``output``.

    ``imatrix``: the importance matrix (GGUF or .dat); ``threads`` 0 = all cores;
    ``base_ftype``: the llama_ftype recorded in the file (default: the plan's preset, else its
    dominant type); ``hash_output``: record the output's tensor-data SHA-256 (re-reads it)."""

    model: Path
    plan: QuantPlan
    output: Path
    imatrix: Path | None = None
    threads: int = 0
    base_ftype: str | None = None
    hash_output: bool = False


@public_job("quantize")
def quantize(
    request: QuantizeRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> QuantizeResult:
    """Quantize as ``request`` says (see module docstring).

    Progress is one monotone ``overall`` over ``Phase.QUANTIZE`` (one event per tensor from
    llama.cpp, item: the tensor), ``Phase.VERIFY`` (the written types and sizes), with
    ``hash_output`` ``Phase.HASH`` (the output's tensor data, in bytes) and ``Phase.WRITE``
    (sidecar and rename). Cancel at any point leaves no file."""
    check(cancel)
    t0 = time.monotonic()
    out_p = Path(request.output)
    plan = request.plan
    if not isinstance(plan, QuantPlan):
        raise InputError(f"quantize: plan must be a QuantPlan, got {type(plan).__name__}")
    threads = threads_option(request.threads)
    base = check_preset(request.base_ftype, "--base-ftype").name if request.base_ftype else None
    model = open_model(request.model)
    imatrix_path = request.imatrix
    imatrix = read_imatrix(imatrix_path) if imatrix_path is not None else None
    base = base or choose_base_ftype(plan)
    validate_job(model, plan, imatrix, base, out_p)

    overrides = [
        (override_pattern(t.name), TYPES[t.effective].ggml_id) for t in plan.quantized_tensors()
    ]
    sidecar = sidecar_path(out_p)
    kv = lwq_metadata(plan.content_hash(), sidecar.name, imatrix_path, imatrix)

    parts = [(Phase.QUANTIZE, 20.0), (Phase.VERIFY, 0.2)]
    if request.hash_output:
        parts.append((Phase.HASH, 1.0))
    parts.append((Phase.WRITE, 0.1))
    phases = Phases(progress, parts)
    with atomic_output(out_p) as tmp:
        phases.start(Phase.QUANTIZE, len(model.tensors))
        run_in_child(
            "lwq_app.core.plan.quantize:child_quantize",
            {
                "src": str(model.path),
                "dst": str(tmp),
                "ftype": PRESETS[base].ftype,
                "overrides": overrides,
                "imatrix_path": None if imatrix_path is None else str(imatrix_path),
                "kv": kv,
                "threads": threads,
            },
            progress=phases.sink(Phase.QUANTIZE),
            cancel=cancel,
            job="quantize",
            subject=model.path,
            item_kind="tensor",
        )
        check(cancel)
        verify = phases.start(Phase.VERIFY, 1, out_p.name)
        written = _verify_output(tmp, plan)
        verify(Progress(Phase.VERIFY, 1, 1, out_p.name))
        digest = None
        if request.hash_output:
            digest = tensor_data_hash(written, progress=phases.sink(Phase.HASH), cancel=cancel)
        check(cancel)
        phases.start(Phase.WRITE, 1, sidecar.name)
        check(cancel)  # a cancel until here leaves nothing: no sidecar, no GGUF
        side = _sidecar(plan, model, imatrix_path, base, digest)
        atomic_write_text(sidecar, json.dumps(side, indent=1) + "\n")
    phases.sink(Phase.WRITE)(Progress(Phase.WRITE, 1, 1, str(out_p)))
    return QuantizeResult(
        output=out_p,
        sidecar=sidecar,
        plan=plan,
        base_ftype=base,
        n_overrides=len(overrides),
        tensor_bytes=written.tensor_data_bytes,
        tensor_data_sha256=digest,
        seconds=time.monotonic() - t0,
    )


def lwq_metadata(
    plan_hash: str, sidecar_name: str, imatrix_path: Path | None, imatrix: Imatrix | None
) -> list[tuple[str, int | str]]:
    """The metadata the quantize job adds to the source's (llama.cpp's ``kv_overrides``):
    the plan's hash and sidecar name, lwq's version and, with an imatrix, llama-quantize's
    ``quantize.imatrix.*`` keys. ``plan.file_size`` sizes the file from the same list."""
    kv: list[tuple[str, int | str]] = [
        (KV_PLAN_HASH, plan_hash),
        (KV_PLAN_FILE, _fit127(sidecar_name)),
        (KV_VERSION, _version()),
    ]
    if imatrix is not None:
        kv.append((KV_IMATRIX_FILE, _fit127(str(imatrix_path))))
        if imatrix.datasets:
            kv.append((KV_IMATRIX_DATASET, _fit127(imatrix.datasets[0])))
        kv.append((KV_IMATRIX_ENTRIES, len(imatrix.entries)))
        if imatrix.chunk_count > 0:
            kv.append((KV_IMATRIX_CHUNKS, imatrix.chunk_count))
    return kv


def _fit127(s: str) -> str:
    raw = s.encode()
    return s if len(raw) <= 127 else raw[-127:].decode("utf-8", "ignore")


def _version() -> str:
    from ... import __version__

    return __version__


def _verify_output(path: Path, plan: QuantPlan) -> ModelInfo:
    """The written types and sizes must be exactly the plan's; anything else is a failure."""
    written = open_model(path)
    got = {t.name: t.type for t in written.tensors}
    want = plan.effective_types()
    bad = [n for n in want if got.get(n) != want[n]]
    if bad:
        n = bad[0]
        raise JobFailed(
            f"llama.cpp wrote {n} as {got.get(n)}, the plan says {want[n]} "
            f"({len(bad)} tensor(s) differ); output discarded"
        )
    if written.tensor_data_bytes != plan.size_bytes:
        raise JobFailed(
            f"written tensor data is {written.tensor_data_bytes} bytes, "
            f"plan predicts {plan.size_bytes}; output discarded"
        )
    return written


def _sidecar(
    plan: QuantPlan,
    model: ModelInfo,
    imatrix_path: str | Path | None,
    base: str,
    digest: str | None,
) -> dict[str, Any]:
    from ..engine import llama_cpp_version

    return {
        "format": "lwq-quantized",
        "plan_sha256": plan.content_hash(),
        "tensor_data_sha256": digest,
        "source": {"file": model.path.name, "fingerprint": model.fingerprint()},
        "imatrix": None if imatrix_path is None else str(imatrix_path),
        "base_ftype": base,
        "lwq_version": _version(),
        "llama_cpp_python": llama_cpp_version(),
        "plan": plan.to_dict(),
    }


# --- child side -------------------------------------------------------------------------------


def child_quantize(
    ctx: ChildContext,
    *,
    src: str,
    dst: str,
    ftype: int,
    overrides: list[tuple[str, int]],
    imatrix_path: str | None,
    kv: list[tuple[str, int | str]],
    threads: int,
) -> int:
    """Runs in the child process: load the imatrix, call llama.cpp, report each tensor."""
    from ..engine import quantize_file

    weights = read_imatrix(imatrix_path).weights() if imatrix_path else None

    def on_tensor(i: int, n: int, name: str) -> None:
        ctx.progress(Progress(Phase.QUANTIZE, i - 1, n, name))

    res = quantize_file(
        src,
        dst,
        ftype=ftype,
        overrides=overrides,
        imatrix=weights,
        kv=kv,
        threads=threads,
        pure=True,
        on_tensor=on_tensor,
    )
    if not res.ok:
        reason = next(
            (
                ln.strip()
                for ln in reversed(res.log)
                if "failed to quantize" in ln or "error" in ln.lower()
            ),
            "llama_model_quantize failed",
        )
        if "imatrix" in reason:
            raise ImatrixError(reason)
        raise JobFailed(reason)
    return len(overrides)
