"""Throughput like llama-bench: pp (prompt), tg (generation) and pg (both) in tokens/s.

The model is loaded once; each test gets its own context of n_depth + n_prompt + n_gen
tokens, a warm-up (the whole prompt; one generated token), then ``repetitions`` timed runs
from an empty cache; prompt tokens are random (BOS first when the vocab adds one) and
decoded n_batch at a time, generated tokens one by one. Records carry llama-bench's JSON
field names, and ``markdown_table`` prints its table layout. Runs in a child process
(cancel = kill).
"""

from __future__ import annotations

import math
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine import LlamaSession, llama_cpp_version
from ..engine.common import backend_devices
from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import InputError
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from ..modelfile.inventory import open_model

DEFAULT_BATCH = 2048
DEFAULT_UBATCH = 512


def bench_test_name(n_prompt: int, n_gen: int, n_depth: int = 0) -> str:
    """llama-bench's name of a test: ``pp512``, ``tg128``, ``pp512+tg128``, ``… @ d4096``."""
    if n_prompt > 0 and n_gen == 0:
        name = f"pp{n_prompt}"
    elif n_gen > 0 and n_prompt == 0:
        name = f"tg{n_gen}"
    else:
        name = f"pp{n_prompt}+tg{n_gen}"
    return name + (f" @ d{n_depth}" if n_depth else "")


@dataclass(frozen=True)
class BenchRequest:
    """``lwq bench``: each (n_prompt, n_gen) test at each depth, ``repetitions`` timed runs.

    A depth (llama-bench ``-d``) fills the cache with that many random tokens before each
    timed run, untimed: the speed of a prompt or generation after a long context."""

    model: Path
    tests: tuple[tuple[int, int], ...] = ((512, 0), (0, 128))
    repetitions: int = 5
    threads: int = 0
    gpu_layers: int = 0
    n_batch: int = DEFAULT_BATCH
    n_ubatch: int = DEFAULT_UBATCH
    depths: tuple[int, ...] = (0,)
    warmup: bool = True
    #: run the child at normal priority even where the app nices its children (the speed
    #: test: a niced bench loses to every competing process and is not llama-bench's test)
    normal_priority: bool = False


@dataclass(frozen=True)
class BenchRecord:
    """One test, with llama-bench's JSON field names (a subset: the ones lwq can know)."""

    build_commit: str
    cpu_info: str
    gpu_info: str
    backends: str
    model_filename: str
    model_type: str
    model_size: int
    model_n_params: int
    n_batch: int
    n_ubatch: int
    n_threads: int
    n_gpu_layers: int
    n_prompt: int
    n_gen: int
    n_depth: int
    test_time: str
    avg_ns: int
    stddev_ns: int
    avg_ts: float
    stddev_ts: float
    samples_ns: tuple[int, ...]
    samples_ts: tuple[float, ...]

    @property
    def test_name(self) -> str:
        return bench_test_name(self.n_prompt, self.n_gen, self.n_depth)

    def to_json(self) -> dict[str, Any]:
        """llama-bench's JSON record (``lwq bench --json``, the results store)."""
        d = asdict(self)
        d["samples_ns"], d["samples_ts"] = list(self.samples_ns), list(self.samples_ts)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BenchRecord:
        fields = {k: d[k] for k in cls.__dataclass_fields__}
        fields["samples_ns"] = tuple(int(x) for x in fields["samples_ns"])
        fields["samples_ts"] = tuple(float(x) for x in fields["samples_ts"])
        return cls(**fields)


@dataclass(frozen=True)
class BenchResult:
    """One record per test and depth, in llama-bench's order (tests, then depths)."""

    records: tuple[BenchRecord, ...]

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.records]


def _mean(v: list[float]) -> float:
    return sum(v) / len(v) if v else 0.0


def _stdev(v: list[float]) -> float:
    """llama-bench's sample standard deviation (0 for fewer than 2 values)."""
    if len(v) <= 1:
        return 0.0
    m, n = _mean(v), len(v)
    sq = sum(x * x for x in v)
    return math.sqrt(max(0.0, sq / (n - 1) - m * m * n / (n - 1)))


@public_job("bench")
def bench(
    request: BenchRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> BenchResult:
    """Run the benchmark in a child process (``Phase.LOAD``, then ``Phase.BENCH`` per timed
    run, labelled with the test's name)."""
    check(cancel)
    r = request
    tests = list(r.tests)
    if r.repetitions < 1 or not tests or any(p < 0 or g < 0 or p + g == 0 for p, g in tests):
        raise InputError(f"bad benchmark: tests {tests}, {r.repetitions} repetitions")
    if not r.depths or any(d < 0 for d in r.depths):
        raise InputError(f"bad benchmark depth(s): {list(r.depths)}")
    if r.n_batch < 1 or r.n_ubatch < 1:
        raise InputError(f"bad batch sizes: -b {r.n_batch}, -ub {r.n_ubatch}")
    open_model(r.model)  # a missing, foreign or truncated file fails here, naming it
    records: list[BenchRecord] = run_in_child(
        "lwq_app.core.evaluate.bench:child_bench",
        {
            "model": str(r.model),
            "tests": tests,
            "repetitions": r.repetitions,
            "threads": r.threads,
            "gpu_layers": r.gpu_layers,
            "n_batch": r.n_batch,
            "n_ubatch": r.n_ubatch,
            "depths": list(r.depths),
            "warmup": r.warmup,
        },
        progress=progress,
        cancel=cancel,
        job="bench",
        subject=r.model,
        item_kind="test",
        niceness=0 if r.normal_priority else None,
    )
    return BenchResult(tuple(records))


def child_bench(
    ctx: ChildContext,
    *,
    model: str,
    tests: list[tuple[int, int]],
    repetitions: int,
    threads: int,
    gpu_layers: int,
    n_batch: int,
    n_ubatch: int,
    warmup: bool,
    depths: list[int] | None = None,
) -> list[BenchRecord]:
    out = []
    rng = random.Random(0)
    runs = [(p, g, d) for p, g in tests for d in depths or [0]]  # llama-bench's order
    backends, gpu_info = backend_devices()
    total = len(runs) * repetitions
    p0, g0, d0 = runs[0]
    ctx.progress(Progress(Phase.LOAD, 0, 1, Path(model).name))
    with LlamaSession(
        model,
        n_ctx=p0 + g0 + d0,
        n_batch=n_batch,
        n_ubatch=n_ubatch,
        threads=threads,
        gpu_layers=gpu_layers,
    ) as s:
        for ti, (n_prompt, n_gen, n_depth) in enumerate(runs):
            if ti:  # like llama-bench: the model stays loaded, each test gets a new context
                s.new_context(n_prompt + n_gen + n_depth, n_batch=n_batch, n_ubatch=n_ubatch)
            s.attach_threadpool()  # llama-bench runs every test on a persistent threadpool
            info = s.info()
            if ti == 0:
                ctx.progress(
                    Progress(Phase.BENCH, 0, total, bench_test_name(n_prompt, n_gen, n_depth))
                )

            if warmup:
                if n_prompt:
                    _prompt(s, rng, n_prompt)
                if n_gen:
                    s.clear()
                    _gen(s, rng, 1, 0)
            samples: list[int] = []
            for r in range(repetitions):
                s.clear()
                if n_depth:
                    _prompt(s, rng, n_depth)  # untimed context fill
                t0 = time.perf_counter_ns()
                if n_prompt:
                    _prompt(s, rng, n_prompt, n_depth)
                if n_gen:
                    _gen(s, rng, n_gen, n_depth + n_prompt)
                samples.append(time.perf_counter_ns() - t0)
                done = ti * repetitions + r + 1
                label = bench_test_name(n_prompt, n_gen, n_depth)
                ctx.progress(Progress(Phase.BENCH, done, total, label))
            ts = [1e9 * (n_prompt + n_gen) / t for t in samples]
            out.append(
                BenchRecord(
                    build_commit=f"llama-cpp-python {llama_cpp_version()}",
                    cpu_info=platform.processor() or platform.machine(),
                    gpu_info=gpu_info,
                    backends=backends,
                    model_filename=model,
                    model_type=info.description,
                    model_size=info.model_size,
                    model_n_params=info.n_params,
                    n_batch=n_batch,
                    n_ubatch=n_ubatch,
                    n_threads=info.threads,
                    n_gpu_layers=gpu_layers,
                    n_prompt=n_prompt,
                    n_gen=n_gen,
                    n_depth=n_depth,
                    test_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    avg_ns=int(_mean([float(x) for x in samples])),
                    stddev_ns=int(_stdev([float(x) for x in samples])),
                    avg_ts=_mean(ts),
                    stddev_ts=_stdev(ts),
                    samples_ns=tuple(samples),
                    samples_ts=tuple(ts),
                )
            )
    return out


def _prompt(s: LlamaSession, rng: random.Random, n: int, start: int = 0) -> None:
    """llama-bench's test_prompt: random tokens (BOS first), n_batch per decode, from
    position ``start`` (after a depth fill)."""
    done = 0
    while done < n:
        k = min(n - done, s.n_batch)
        toks = [rng.randrange(s.n_vocab) for _ in range(k)]
        if done == 0 and s.add_bos:
            toks[0] = s.bos
        at = start + done
        s.decode(toks, range(at, at + k), [0] * k, [False] * (k - 1) + [True])
        done += k
    s.synchronize()


def _gen(s: LlamaSession, rng: random.Random, n: int, start: int) -> None:
    """llama-bench's test_gen: one random token per decode."""
    tok = s.bos if s.add_bos else rng.randrange(s.n_vocab)
    for i in range(n):
        s.decode([tok], [start + i], [0], [True])
        s.synchronize()
        tok = rng.randrange(s.n_vocab)


def _size(b: int) -> str:
    return f"{b / 1024**2:.2f} MiB" if b < 1024**3 else f"{b / 1024**3:.2f} GiB"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} B"


def markdown_table(records: Sequence[BenchRecord]) -> str:
    """llama-bench's markdown table (model, size, params, backend, [ngl,] threads, test, t/s)."""
    gpu = any(r.n_gpu_layers for r in records)
    cols: list[tuple[str, int]] = [("model", -30), ("size", 10), ("params", 10), ("backend", -10)]
    if gpu:
        cols.append(("ngl", 3))
    cols += [("threads", 7), ("test", 15), ("t/s", 20)]

    def cell(text: str, width: int) -> str:
        return text.ljust(-width) if width < 0 else text.rjust(width)

    lines = ["| " + " | ".join(cell(n, w) for n, w in cols) + " |"]
    lines.append(
        "| " + " | ".join("-" * (abs(w) - 1) + (":" if w > 0 else "-") for _, w in cols) + " |"
    )
    for r in records:
        values = {
            "model": r.model_type,
            "size": _size(r.model_size),
            "params": _params(r.model_n_params),
            "backend": r.backends,
            "ngl": str(r.n_gpu_layers),
            "threads": str(r.n_threads),
            "test": r.test_name,
            "t/s": f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}",
        }
        lines.append("| " + " | ".join(cell(values[n], w) for n, w in cols) + " |")
    return "\n".join(lines) + "\n"
