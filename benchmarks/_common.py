"""Shared helpers for the benchmarks: timing a command with its whole process tree's RSS."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss: int  # bytes, summed over the process tree, sampled every 20 ms (0: not sampled)


def measure(cmd: list[str], env: dict[str, str] | None = None, rss: bool = True) -> Run:
    """Wall time (and, with ``rss``, peak RSS) of a command. Sampling scans /proc every 20 ms,
    which costs CPU on a 2-core machine: time-only benchmarks pass ``rss=False``."""
    with tempfile.TemporaryFile() as err_file:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, env=env)
        peak = _sample_peak_rss(p) if rss else 0
        p.wait()
        seconds = time.perf_counter() - t0
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return Run(seconds, peak)


def _sample_peak_rss(p: subprocess.Popen[bytes]) -> int:
    proc = psutil.Process(p.pid)
    peak = 0
    while p.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(x.memory_info().rss for x in procs if x.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    return peak


def median(xs: list[float]) -> float:
    return statistics.median(xs)
