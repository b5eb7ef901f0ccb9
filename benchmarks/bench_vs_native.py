"""``lwq bench`` pp/tg tokens/s vs ``llama-bench`` on the same file and threads.

Alternating runs (llama-bench, lwq, lwq, llama-bench, …), each with its own repetitions;
reports per test both sides' median and σ over runs, the ratio of the medians (whether
it is within 5%), the spread of the ratios of neighbouring runs, and the ratio of the means
with a bootstrap interval.

    python benchmarks/bench_vs_native.py --tools /work/ref/build/bin --model M.gguf \
        [-p 512] [-n 128] [-r 5] [--runs 10] [--threads 2] [--load-core 0]

``--load-core C`` runs the comparison under a controlled competing load: one busy process
(a pure spin loop, ordinary priority) pinned to core C for the whole run, started before
the first run, so both tools see the same load; the load average is printed per run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from statistics import fmean, stdev

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median

from lwq_app.core.engine.common import cpu_extra_buffers_safe


def run_json(cmd: list[str]) -> list[dict]:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return list(json.loads(p.stdout))


def key(r: dict) -> str:
    return f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", type=Path, required=True, help="folder with llama-bench")
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--load-core",
        type=int,
        default=None,
        metavar="C",
        help="run a busy process pinned to core C during the whole comparison",
    )
    ap.add_argument("--lwq-nice", type=int, default=0, metavar="N",
                    help="run lwq N steps nicer (the app's children before the speed test "
                         "ran its benches at normal priority)")  # fmt: skip
    a = ap.parse_args()
    load = start_load(a.load_core) if a.load_core is not None else None
    try:
        compare(a)
    finally:
        if load is not None:
            load.kill()
            load.wait()


def start_load(core: int) -> subprocess.Popen[bytes]:
    """A spinning process pinned to ``core`` (``taskset``'s job, done with sched_setaffinity)."""
    code = f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"
    p = subprocess.Popen([sys.executable, "-c", code])
    print(f"competing load: pid {p.pid} spinning on core {core}", flush=True)
    return p


def compare(a: argparse.Namespace) -> None:
    native = [str(a.tools / "llama-bench"), "-m", str(a.model), "-p", str(a.p), "-n", str(a.n),
              "-r", str(a.r), "-t", str(a.threads), "-o", "json"]  # fmt: skip
    if not cpu_extra_buffers_safe():  # what lwq does on AMX CPUs (llama.cpp #20824)
        native += ["--repack", "0"]
    lwq = [sys.executable, "-m", "lwq_app.cli", "bench", str(a.model), "-p", str(a.p),
           "-n", str(a.n), "-r", str(a.r), "--threads", str(a.threads), "--json",
           "--no-store"]  # fmt: skip
    if a.lwq_nice:
        lwq = ["nice", "-n", str(a.lwq_nice), *lwq]
    ts: dict[str, dict[str, list[float]]] = {"lwq": {}, "native": {}}
    for i in range(a.runs):
        for name in ("native", "lwq") if i % 2 == 0 else ("lwq", "native"):
            for r in run_json(native if name == "native" else lwq):
                ts[name].setdefault(key(r), []).append(r["avg_ts"])
                la = os.getloadavg()[0]
                print(
                    f"run {i + 1} {name:6} {key(r):6}: {r['avg_ts']:9.2f} ± {r['stddev_ts']:.2f} t/s"
                    f"  (load avg {la:.2f})",
                    flush=True,
                )
    for test in ts["native"]:
        nat, lw = ts["native"][test], ts["lwq"][test]
        n, l_ = median(nat), median(lw)
        # each run of one side is paired with the other side's run next to it
        pairs = sorted(y / x for x, y in zip(nat, lw, strict=True))
        q1, q3 = pairs[len(pairs) // 4], pairs[(3 * len(pairs)) // 4]
        ok = abs(l_ / n - 1) <= 0.05
        lo, hi = mean_ratio_interval(nat, lw)
        print(
            f"{test:6}: llama-bench {n:9.2f} t/s (runs σ {stdev(nat):.2f}), "
            f"lwq {l_:9.2f} t/s (runs σ {stdev(lw):.2f}), ratio of medians {l_ / n:.3f} "
            f"({'within' if ok else 'outside'} 5%); pair ratios median {median(pairs):.3f}, "
            f"quartiles {q1:.3f}..{q3:.3f}, {len(pairs)} pairs; ratio of means "
            f"{fmean(lw) / fmean(nat):.3f} (95% bootstrap interval {lo:.3f}..{hi:.3f})"
        )


def mean_ratio_interval(nat: list[float], lw: list[float], n: int = 5000) -> tuple[float, float]:
    """95% interval of mean(lwq) / mean(native), resampling the pairs (fixed seed)."""
    rng = random.Random(0)
    idx = range(len(nat))
    boots = []
    for _ in range(n):
        pick = rng.choices(idx, k=len(nat))
        boots.append(fmean(lw[i] for i in pick) / fmean(nat[i] for i in pick))
    boots.sort()
    return boots[int(0.025 * n)], boots[int(0.975 * n) - 1]


if __name__ == "__main__":
    main()
