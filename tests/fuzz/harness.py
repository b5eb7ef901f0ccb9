"""In-process fuzz harness: seeded cases -> lwq's readers, one rule for every case.

The rule: each case ends in a project error (a subclass of ``LwqError`` other than
``InternalError``, which marks a bug) or a valid result, within ``CASE_TIMEOUT`` seconds.
Anything else is an *escape*: a raw Python exception, a hang (the per-case timer fired), a
``MemoryError`` (the batch runs under ``RLIMIT_AS``), a crash of the batch process, or
*accepted garbage* (a result that breaks a rule the readers promise: unique tensor names,
dims >= 1, ne0 a multiple of the block size, aligned, in-range, non-overlapping tensors, at
least one tensor; finite non-negative imatrix values).

Batches run in a child process (``run_batch``) with an address-space limit, so a runaway
allocation is a ``MemoryError`` and a native crash is recorded against its case, and the
batch resumes after it. Every case is reproducible alone:

    python tests/fuzz/harness.py case FORMAT SEED INDEX     # prints the mutation and outcome
    python tests/fuzz/harness.py run FORMAT SEED COUNT      # a batch, JSON summary on stdout
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
#: another copy of lwq_app to fuzz (e.g. ``git archive HEAD lwq_app | tar -x -C /tmp/orig``)
if os.environ.get("LWQ_FUZZ_CODE"):
    sys.path.insert(0, os.environ["LWQ_FUZZ_CODE"])

import mutators  # noqa: E402
import seeds  # noqa: E402

CASE_TIMEOUT = 2.0
MEMORY_LIMIT = 2 << 30
FORMATS = ("model", "imatrix", "imatrix_golden", "dat", "plan", "size", "bpw", "names")
LAST_REPORT = ""  # markdown of the last run_all in this process (test_fuzz sets it)
GOLDEN_IMATRIX = ROOT / "tests" / "golden" / "smollm2.imatrix.gguf"


class Hang(BaseException):
    """The per-case timer fired (a BaseException: ``except Exception`` must not eat it)."""


class Accepted(Exception):
    """A reader returned a result that breaks one of its promises (accepted garbage)."""


@dataclass
class Outcome:
    kind: str  # ok | error | escape | hang | accepted
    exc_type: str = ""
    message: str = ""
    where: str = ""  # deepest lwq_app frame: file:function

    @property
    def bad(self) -> bool:
        return self.kind in ("escape", "hang", "accepted")

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.exc_type}:{self.where}"


@dataclass
class Case:
    fmt: str
    seed: int
    index: int
    desc: str
    payload: Any  # bytes or str
    ops: list[Any] = field(default_factory=list)
    must_fail: bool = False


# --- seeds, per process -----------------------------------------------------------------------

_SEEDS: dict[str, Any] = {}


def seed_dir() -> Path:
    """Where the seed files are cached: keyed by the code that writes them (seeds.py, and the
    plan module whose ``to_json`` makes the seed plan)."""
    if os.environ.get("LWQ_FUZZ_SEEDS"):
        return Path(os.environ["LWQ_FUZZ_SEEDS"])
    import hashlib

    import lwq_app.core.plan.quant_plan as qp

    h = hashlib.sha256((HERE / "seeds.py").read_bytes() + Path(qp.__file__).read_bytes())
    return Path(tempfile.gettempdir()) / f"lwq-fuzz-seeds-{h.hexdigest()[:12]}"


def _seeds() -> dict[str, Any]:
    if not _SEEDS:
        files = seeds.make_all(seed_dir())
        from lwq_app.core.modelfile.inventory import open_model

        _SEEDS["files"] = files
        _SEEDS["model_bytes"] = files["model"].read_bytes()
        _SEEDS["model_layout"] = mutators.parse_gguf(_SEEDS["model_bytes"])
        _SEEDS["imatrix_layout"] = mutators.parse_gguf(files["imatrix"].read_bytes())
        _SEEDS["golden_layout"] = mutators.parse_gguf(GOLDEN_IMATRIX.read_bytes())
        _SEEDS["dat_layout"] = mutators.parse_dat(files["dat"].read_bytes())
        _SEEDS["plan_text"] = files["plan"].read_text()
        _SEEDS["model_info"] = open_model(files["model"])
    return _SEEDS


# --- cases ------------------------------------------------------------------------------------


def make_case(fmt: str, seed: int, index: int, ops: list[Any] | None = None) -> Case:
    """Case ``index`` of ``fmt`` under ``seed``; with ``ops``, those primitive ops only."""
    s = _seeds()
    rng = mutators.case_rng(fmt, seed, index)
    if fmt in ("model", "imatrix", "imatrix_golden", "dat"):
        lay = {
            "model": s["model_layout"],
            "imatrix": s["imatrix_layout"],
            "imatrix_golden": s["golden_layout"],
            "dat": s["dat_layout"],
        }[fmt]
        if ops is None:
            if fmt == "dat":
                m = mutators.mutate_dat(lay, rng)
            else:
                m = mutators.mutate_gguf(lay, rng, imatrix=fmt != "model")
            ops = m.ops
        desc = "; ".join(o.desc for o in ops)
        data = mutators.apply_ops(lay.buf, ops, None if fmt == "dat" else lay)
        must_fail = _must_fail(ops)
        return Case(fmt, seed, index, desc, data, ops, must_fail)
    if fmt == "plan":
        text, desc = mutators.mutate_plan(s["plan_text"], rng)
        return Case(fmt, seed, index, desc, text)
    if fmt == "size":
        text, desc = mutators.mutate_size(rng)
        return Case(fmt, seed, index, desc, text)
    if fmt == "bpw":
        text, desc = mutators.mutate_bpw(rng)
        return Case(fmt, seed, index, desc, text)
    if fmt == "names":
        name, tensor, desc = mutators.mutate_name(rng)
        return Case(fmt, seed, index, desc, (name, tensor))
    raise ValueError(fmt)


def _must_fail(ops: list[Any]) -> bool:
    """A case that is only a duplicate key or only a duplicate tensor name (nothing else
    that could undo it) must be refused."""
    descs = [o.desc for o in ops]
    if len(ops) == 2 and descs[0].startswith("duplicate key") and descs[1].startswith("n_kv ->"):
        return True
    if len(ops) == 1 and " renamed " in descs[0]:
        a, _, b = descs[0].partition(" renamed ")
        return a.removeprefix("tensor ") != b
    return False


# --- targets ----------------------------------------------------------------------------------


def _check_model(m: Any, path: Path) -> None:
    """Rules every accepted model keeps (issue #9: 'validate before anything trusts a file')."""
    from lwq_app.core.modelfile.type_catalog import TYPES

    if not m.tensors:
        raise Accepted("model with 0 tensors accepted")
    names = [t.name for t in m.tensors]
    if len(set(names)) != len(names):
        raise Accepted("duplicate tensor names accepted")
    align = m.metadata.get("general.alignment", 32)
    if not isinstance(align, int) or isinstance(align, bool) or align <= 0 or align & (align - 1):
        raise Accepted(f"general.alignment {align!r} accepted")
    size = path.stat().st_size
    spans = []
    for t in m.tensors:
        if not t.shape or any(d < 1 for d in t.shape):
            raise Accepted(f"tensor {t.name} shape {t.shape} accepted")
        bs = TYPES[t.type].block_size
        if t.shape[0] % bs:
            raise Accepted(f"tensor {t.name} {t.type} ne0={t.shape[0]} accepted")
        if t.data_offset % align:
            raise Accepted(f"tensor {t.name} misaligned offset accepted")
        if t.data_offset + t.n_bytes > size:
            raise Accepted(f"tensor {t.name} past end of file accepted")
        spans.append((t.data_offset, t.data_offset + t.n_bytes, t.name))
    spans.sort()
    for (_, e1, n1), (s2, _, n2) in itertools.pairwise(spans):
        if s2 < e1:
            raise Accepted(f"overlapping tensors {n1} / {n2} accepted")


def target_model(path: Path) -> None:
    from lwq_app.core.modelfile.gguf_header import read_header
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.plan.quant_plan import plan_from_preset

    h = read_header(path, keep_strings=("tokenizer.ggml.tokens",))
    _ = h.alignment
    m = open_model(path)
    _strict_json(m.to_json(), "inspect --json")
    _check_model(m, path)
    plan = plan_from_preset(m, "Q4_K_M")
    _strict_json(json.loads(plan.to_json()), "plan JSON")
    plan.layer_summary()
    _upcast(path)


def _upcast(path: Path) -> None:
    """An accepted model upcasts (gguf-py's reader and writer); a failure leaves no file."""
    from lwq_app.core.jobs.errors import LwqError
    from lwq_app.core.modelfile.upcast import UpcastRequest, upcast

    out = path.with_name("upcast-out.gguf")
    try:
        upcast(UpcastRequest(path, out, "F32"))
    except LwqError:
        left = sorted(p.name for p in path.parent.iterdir() if p != path)
        if left:
            for p in path.parent.iterdir():
                if p != path:
                    p.unlink()
            raise Accepted(f"upcast failed and left {left}") from None
        raise
    out.unlink()


def _strict_json(obj: Any, what: str) -> None:
    """What lwq prints as JSON must be standard JSON: no NaN/Infinity literals."""
    try:
        json.dumps(obj, allow_nan=False, default=str)
    except ValueError as e:
        raise Accepted(f"{what} holds a non-finite number ({e})") from None


def _check_imatrix(im: Any) -> None:
    import numpy as np

    for name, e in im.entries.items():
        if not np.all(np.isfinite(e.sums)) or np.any(e.sums < 0):
            raise Accepted(f"imatrix entry {name}: non-finite or negative values accepted")
        if not np.all(np.isfinite(e.counts)) or np.any(e.counts < 0):
            raise Accepted(f"imatrix entry {name}: non-finite or negative counts accepted")
    if not all(isinstance(d, str) for d in im.datasets):
        raise Accepted("imatrix datasets not strings accepted")


def target_imatrix(path: Path) -> None:
    from lwq_app.core.importance.statistics import (
        StatisticsRequest,
        format_stats,
        imatrix_statistics,
    )
    from lwq_app.core.modelfile.imatrix_file import read_imatrix

    im = read_imatrix(path)
    _check_imatrix(im)
    st = imatrix_statistics(StatisticsRequest(path))
    format_stats(st)
    _strict_json(st.to_dict(), "stats --json")
    if path.name.endswith(".imatrix.gguf") or path.suffix == ".dat":  # the tiny model's
        im.check_model(_seeds()["model_info"])


def target_plan(path: Path) -> None:
    from lwq_app.core.plan.quant_plan import load_plan

    plan = load_plan(path, _seeds()["model_info"])
    _strict_json(json.loads(plan.to_json()), "plan JSON")
    plan.layer_summary()
    plan.content_hash()
    plan.warnings()
    from lwq_app.core.jobs.errors import PlanError

    try:  # the tiny model's K-type rows fall back, so --strict refuses most plans
        load_plan(path, _seeds()["model_info"], strict=True)
    except PlanError as e:
        if type(e).__name__ == "InternalError":
            raise


def target_size(text: str) -> None:
    from lwq_app.core.jobs.errors import LwqError
    from lwq_app.core.jobs.units import parse_size
    from lwq_app.core.optimize.auto_plan import MemoryBudget, SizeBudget, check_budget

    try:
        n = parse_size(text)
    except (ValueError, LwqError) as e:  # ValueError: parse_size's documented contract
        if type(e) not in (ValueError,) and not isinstance(e, LwqError):
            raise
    else:
        if not isinstance(n, int) or n < 0:
            raise Accepted(f"parse_size({text!r}) = {n!r}")
    try:
        check_budget(MemoryBudget.parse(text))
    except LwqError as e:
        if type(e).__name__ == "InternalError":
            raise
    b = SizeBudget.parse(text)  # a project error here ends the case as an "error"
    check_budget(b)
    if not isinstance(b.bytes, int) or b.bytes <= 0:
        raise Accepted(f"budget {text!r} = {b.bytes!r}")


def target_bpw(text: str) -> None:
    from lwq_app.core.optimize.auto_plan import BpwBudget, check_budget

    try:
        x = float(text)  # what argparse's type=float does; its ValueError is a usage error
    except ValueError:
        return
    b = BpwBudget(x)
    check_budget(b)
    if not math.isfinite(b.bpw) or b.bpw <= 0:
        raise Accepted(f"bpw {text!r} accepted")


def target_names(arg: tuple[str, str]) -> None:
    """A preset name (``--preset``, ``--base-ftype``) and a ``--set TENSOR=TYPE`` edit."""
    from lwq_app.core.jobs.errors import LwqError
    from lwq_app.core.plan.quant_plan import PlanRequest, make_plan
    from lwq_app.core.plan.recipe import make_recipe

    name, tensor = arg
    model = _seeds()["files"]["model"]
    first: LwqError | None = None
    for request in (
        PlanRequest(model, preset=name),
        PlanRequest(model, preset="Q4_K_M", changes=((tensor, name),)),
        PlanRequest(model, preset="Q4_K_M", changes=((tensor, name),), strict=True),
    ):
        try:
            make_plan(request)
        except LwqError as e:
            if type(e).__name__ == "InternalError":
                raise
            first = first or e
    plan = make_plan(PlanRequest(model, preset="Q4_K_M")).plan
    try:
        r = make_recipe(plan, name)
        r.command("m.gguf", "o.gguf", "t.txt", None, 0)
        from lwq_app.core.plan.stock_mixes import PRESETS

        if r.base_ftype not in PRESETS:
            raise Accepted(f"recipe with base ftype {r.base_ftype!r} accepted")
    except LwqError as e:
        if type(e).__name__ == "InternalError":
            raise
        first = first or e
    if first is not None:
        raise first


TARGETS: dict[str, Callable[[Any], None]] = {
    "model": target_model,
    "imatrix": target_imatrix,
    "imatrix_golden": target_imatrix,
    "dat": target_imatrix,
    "plan": target_plan,
    "size": target_size,
    "bpw": target_bpw,
    "names": target_names,
}
_SUFFIX = {"dat": ".dat", "plan": ".json", "model": ".gguf"}


def _where(tb: Any) -> str:
    frames = traceback.extract_tb(tb)
    mine = [f for f in frames if "lwq_app" in f.filename]
    f = (mine or frames or [None])[-1]
    if f is None:
        return "?"
    fn = f.filename
    for marker in ("lwq_app/", "site-packages/"):
        if marker in fn:
            fn = fn.split(marker, 1)[1]
            fn = ("lwq_app/" if marker == "lwq_app/" else "") + fn
            break
    else:
        fn = Path(fn).name
    return f"{fn}:{f.name}"


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang()


def run_case(case: Case, workdir: Path) -> Outcome:
    """Run one case under the per-case timer; classify how it ended."""
    from lwq_app.core.jobs.errors import LwqError

    target = TARGETS[case.fmt]
    arg: Any = case.payload
    if case.fmt in ("model", "imatrix", "imatrix_golden", "dat", "plan"):
        suffix = _SUFFIX.get(case.fmt, ".imatrix.gguf")
        if case.fmt == "imatrix_golden":
            suffix = ".golden.gguf"  # SmolLM2's imatrix: not checked against the tiny model
        path = workdir / f"case{suffix}"
        data = arg.encode("utf-8", "surrogatepass") if isinstance(arg, str) else arg
        path.write_bytes(data)
        arg = path
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT)
    try:
        try:
            target(arg)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except Hang:
        return Outcome(
            "hang", "Hang", f"no result within {CASE_TIMEOUT:g} s", _where(sys.exc_info()[2])
        )
    except Accepted as e:
        return Outcome("accepted", "Accepted", str(e), "oracle")
    except LwqError as e:
        if type(e).__name__ == "InternalError":
            return Outcome("escape", "InternalError", str(e)[:300], _where(e.__traceback__))
        if "\n" in str(e) or "\r" in str(e):  # one line for the CLI and the app alike
            return Outcome("escape", "MultilineMessage", str(e)[:300], type(e).__name__)
        return Outcome("error", type(e).__name__, str(e)[:300])
    except (Exception, MemoryError, RecursionError) as e:
        return Outcome("escape", type(e).__name__, str(e)[:300], _where(e.__traceback__))
    finally:
        signal.signal(signal.SIGALRM, old)
    if case.must_fail:
        return Outcome("accepted", "Accepted", f"accepted: {case.desc[:200]}", "must_fail")
    return Outcome("ok")


def minimize(case: Case, out: Outcome, workdir: Path) -> str:
    """The smallest subset of the case's primitive ops that still gives the same escape."""
    if len(case.ops) <= 1:
        return case.desc
    for op in case.ops:
        c = make_case(case.fmt, case.seed, case.index, [op])
        if run_case(c, workdir).key == out.key:
            return c.desc
    for i in range(len(case.ops)):
        ops = case.ops[:i] + case.ops[i + 1 :]
        c = make_case(case.fmt, case.seed, case.index, ops)
        if run_case(c, workdir).key == out.key:
            return c.desc
    return case.desc


# --- batches ----------------------------------------------------------------------------------


@dataclass
class Escape:
    fmt: str
    seed: int
    index: int
    kind: str
    exc_type: str
    where: str
    message: str
    desc: str
    minimal: str


@dataclass
class BatchResult:
    fmt: str
    seed: int
    cases: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)  # escape key -> cases
    escapes: list[Escape] = field(default_factory=list)  # first example of each class
    seconds: float = 0.0

    def merge(self, other: BatchResult) -> None:
        self.cases += other.cases
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, v in other.classes.items():
            if k not in self.classes:
                self.escapes.extend(e for e in other.escapes if _ekey(e) == k)
            self.classes[k] = self.classes.get(k, 0) + v
        self.seconds += other.seconds

    @property
    def n_bad(self) -> int:
        return sum(self.classes.values())


def _ekey(e: Escape) -> str:
    return f"{e.fmt}:{e.kind}:{e.exc_type}:{e.where}"


def run_inline(
    fmt: str, seed: int, start: int, count: int, progress: Path | None = None
) -> BatchResult:
    res = BatchResult(fmt, seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lwq-fuzz-", dir=_fast_tmp()) as d:
        work = Path(d)
        fd = os.open(progress, os.O_WRONLY | os.O_CREAT) if progress else None
        try:
            for i in range(start, start + count):
                if fd is not None:
                    os.pwrite(fd, f"{i:012d}".encode(), 0)
                case = make_case(fmt, seed, i)
                out = run_case(case, work)
                res.cases += 1
                res.counts[out.kind] = res.counts.get(out.kind, 0) + 1
                if out.bad:
                    key = f"{fmt}:{out.key}"
                    if key not in res.classes:
                        res.escapes.append(
                            Escape(
                                fmt,
                                seed,
                                i,
                                out.kind,
                                out.exc_type,
                                out.where,
                                out.message,
                                case.desc[:400],
                                minimize(case, out, work)[:400],
                            )
                        )
                        res.classes[key] = 0
                    res.classes[key] += 1
        finally:
            if fd is not None:
                os.close(fd)
    res.seconds = time.perf_counter() - t0
    return res


def _fast_tmp() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_batch(
    fmt: str, seed: int, count: int, timeout: float | None = None, start: int = 0
) -> BatchResult:
    """``count`` cases in child processes under ``RLIMIT_AS``; a dead child is recorded
    against the case it was running and the batch resumes after it."""
    total = BatchResult(fmt, seed)
    end = start + count
    timeout = timeout or 120 + 0.2 * count  # cases take milliseconds
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    while start < end:
        with tempfile.TemporaryDirectory(prefix="lwq-fuzzb-") as d:
            prog, out = Path(d) / "progress", Path(d) / "out.json"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "child",
                fmt,
                str(seed),
                str(start),
                str(end - start),
                str(prog),
                str(out),
            ]
            t0 = time.perf_counter()
            try:
                p = subprocess.run(
                    cmd,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    preexec_fn=_limit_memory,
                    check=False,
                )
            except subprocess.TimeoutExpired as e:  # a hang the per-case timer could not stop
                stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
                p = subprocess.CompletedProcess(cmd, "timeout", "", stderr or "")
            if p.returncode == 0 and out.exists():
                total.merge(_load(json.loads(out.read_text())))
                return total
            text = prog.read_text() if prog.exists() else ""
            at = int(text) if text else start
            partial = Path(str(out) + ".partial")
            if partial.exists():
                total.merge(_load(json.loads(partial.read_text())))
            dead = BatchResult(
                fmt, seed, cases=1, counts={"crash": 1}, seconds=time.perf_counter() - t0
            )
            key = f"{fmt}:crash:rc{p.returncode}:child"
            dead.classes[key] = 1
            dead.escapes.append(
                Escape(
                    fmt,
                    seed,
                    at,
                    "crash",
                    f"rc{p.returncode}",
                    "child",
                    p.stderr[-300:],
                    make_case(fmt, seed, at).desc[:400],
                    "",
                )
            )
            total.merge(dead)
            start = at + 1
    return total


def _load(d: dict[str, Any]) -> BatchResult:
    r = BatchResult(
        d["fmt"],
        d["seed"],
        d["cases"],
        d["counts"],
        d["classes"],
        [Escape(**e) for e in d["escapes"]],
        d["seconds"],
    )
    return r


def _child(fmt: str, seed: int, start: int, count: int, prog: Path, out: Path) -> None:
    # results are flushed in chunks so a crash keeps what was done before it
    done = BatchResult(fmt, seed)
    chunk = 250
    i = start
    while i < start + count:
        n = min(chunk, start + count - i)
        done.merge(run_inline(fmt, seed, i, n, prog))
        i += n
        Path(str(out) + ".partial").write_text(json.dumps(asdict(done)))
    out.write_text(json.dumps(asdict(done)))


# --- the whole suite ------------------------------------------------------------------------

#: cases per format at the CI size (>= 10,000 in all)
DEFAULT_COUNTS = {
    "model": 4000,
    "imatrix": 2200,
    "imatrix_golden": 300,
    "dat": 1500,
    "plan": 1500,
    "size": 700,
    "bpw": 300,
    "names": 500,
}
DEFAULT_SEED = 9


def scaled_counts(total: int | None) -> dict[str, int]:
    """``DEFAULT_COUNTS`` scaled to ``total`` cases (None: the CI size)."""
    base = sum(DEFAULT_COUNTS.values())
    if not total:
        return dict(DEFAULT_COUNTS)
    return {f: max(1, round(n * total / base)) for f, n in DEFAULT_COUNTS.items()}


def run_all(seed: int, counts: dict[str, int], workers: int = 2) -> dict[str, BatchResult]:
    """Every format's batch, ``workers`` child processes at a time (largest first); big
    formats are split in slices of 1000 cases so the two workers stay busy."""
    from concurrent.futures import ThreadPoolExecutor

    seeds.make_all(seed_dir())  # once, before the children share the files
    jobs = []
    for fmt, n in counts.items():
        for start in range(0, n, 1000):
            jobs.append((fmt, start, min(1000, n - start)))
    jobs.sort(key=lambda j: -j[2])

    def one(job: tuple[str, int, int]) -> BatchResult:
        fmt, start, n = job
        return run_batch(fmt, seed, n, start=start)

    out = {f: BatchResult(f, seed) for f in counts}
    with ThreadPoolExecutor(workers) as ex:
        for job, r in zip(jobs, ex.map(one, jobs), strict=False):
            out[job[0]].merge(r)
    return out


def report_markdown(results: dict[str, BatchResult], seconds: float) -> str:
    total = sum(r.cases for r in results.values())
    bad = sum(r.n_bad for r in results.values())
    lines = [
        "# Fuzz escapes (issue #9) — written by tests/fuzz/harness.py",
        "",
        f"Run: seed {next(iter(results.values())).seed}, {total} cases, {bad} bad cases, "
        f"{seconds:.0f} s wall. Reproduce one case: "
        "`.venv/bin/python tests/fuzz/harness.py case FORMAT SEED INDEX`.",
        "Kinds: escape = a raw (non-LwqError, or InternalError) exception; hang = no result in "
        f"{CASE_TIMEOUT:g} s; accepted = a result that breaks a reader promise (see "
        "harness._check_model/_check_imatrix); crash = the batch process died.",
        "",
        "| format | cases | ok | project error | bad |",
        "|---|---|---|---|---|",
    ]
    for f, r in results.items():
        lines.append(
            f"| {f} | {r.cases} | {r.counts.get('ok', 0)} | {r.counts.get('error', 0)} | {r.n_bad} |"
        )
    lines += ["", "## Escape classes (format : kind : exception : where), first case of each", ""]
    n = 0
    for r in results.values():
        for e in r.escapes:
            n += 1
            k = _ekey(e)
            lines += [
                f"### {n}. `{k}` — {r.classes.get(k, 0)} case(s)",
                f"- case: `{e.fmt} {e.seed} {e.index}`",
                f"- message: {e.message!r}"[:500],
                f"- mutation: {e.desc}"[:500],
                f"- minimal: {e.minimal}"[:500],
                "",
            ]
    if not n:
        lines.append("None: every case ended in a project error or a valid result.")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    cmd = argv[0]
    if cmd == "child":
        fmt, seed, start, count, prog, out = argv[1:7]
        _child(fmt, int(seed), int(start), int(count), Path(prog), Path(out))
        return 0
    if cmd == "case":
        fmt, seed, index = argv[1], int(argv[2]), int(argv[3])
        case = make_case(fmt, seed, index)
        with tempfile.TemporaryDirectory() as d:
            print(
                json.dumps(
                    {"desc": case.desc, "outcome": asdict(run_case(case, Path(d)))}, indent=1
                )
            )
        return 0
    if cmd == "report":  # report [SEED [TOTAL [OUT.md]]]
        seed = int(argv[1]) if len(argv) > 1 else DEFAULT_SEED
        total = int(argv[2]) if len(argv) > 2 else None
        t0 = time.perf_counter()
        res = run_all(seed, scaled_counts(total))
        text = report_markdown(res, time.perf_counter() - t0)
        if len(argv) > 3:
            Path(argv[3]).write_text(text)
        print(text)
        return 0
    if cmd == "run":
        fmt, seed, count = argv[1], int(argv[2]), int(argv[3])
        r = run_batch(fmt, seed, count)
        print(json.dumps(asdict(r), indent=1))
        return 0
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
