"""Wall time of ``lwq eval`` (base pass + KLD pass) vs the two llama-perplexity runs.

Both sides do the same work on the same files and threads: the base model over N chunks
of a text writing its logits (llama.cpp: ``--kl-divergence-base``; lwq: its compact cache),
then the quantized model against them. lwq's cache is removed before each run so the base
pass is always timed. Median of alternating runs; target ratio ≤ 1.10.

    python benchmarks/eval_vs_native.py --tools /work/ref/build/bin --base F16.gguf \
        --model Q4_K_M.gguf -f wiki.test.raw [--chunks 20] [--ctx 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import measure, median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", type=Path, required=True, help="folder with llama-perplexity")
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("-f", "--file", type=Path, required=True)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2048, help="llama-perplexity -b (n_seq = b/ctx)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lwq-evalbench-"))
    n_seq = max(1, a.batch // a.ctx)
    common = ["-f", str(a.file), "-c", str(a.ctx), "--chunks", str(a.chunks),
              "-b", str(a.batch), "-t", str(a.threads)]  # fmt: skip
    ppl = str(a.tools / "llama-perplexity")
    native = [
        [ppl, "-m", str(a.base), *common, "--kl-divergence-base", str(work / "base.kld")],
        [ppl, "-m", str(a.model), *common, "--kl-divergence-base", str(work / "base.kld"),
         "--kl-divergence"],
    ]  # fmt: skip
    cache = work / "cache"
    lwq = [sys.executable, "-m", "lwq_app.cli", "eval", str(a.model), "-f", str(a.file),
           "--base", str(a.base), "--ctx", str(a.ctx), "--chunks", str(a.chunks),
           "--parallel", str(n_seq), "--threads", str(a.threads), "--cache-dir", str(cache),
           "--no-store"]  # fmt: skip
    times: dict[str, list[float]] = {"lwq": [], "native": []}
    cached = 0
    for i in range(a.runs):
        order = ("native", "lwq") if i % 2 == 0 else ("lwq", "native")
        for name in order:
            shutil.rmtree(cache, ignore_errors=True)
            if name == "native":
                t = sum(measure(cmd, rss=False).seconds for cmd in native)
            else:
                t = measure(lwq, rss=False).seconds
                cached = next(cache.iterdir()).stat().st_size
            times[name].append(t)
            print(f"run {i + 1} {name:6}: {t:7.2f} s")
    t_l, t_n = median(times["lwq"]), median(times["native"])
    kld_bytes = (work / "base.kld").stat().st_size
    print(f"median wall time: lwq {t_l:.2f} s, llama-perplexity ×2 {t_n:.2f} s, "
          f"ratio {t_l / t_n:.3f} (target ≤ 1.10)")  # fmt: skip
    print(f"base logits: llama.cpp {kld_bytes / 1e6:.1f} MB, lwq {cached / 1e6:.1f} MB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
