"""Wall time of ``lwq imatrix`` vs ``llama-imatrix`` on the same model, text and threads.

Runs alternate (native, lwq, native, lwq, …) so drift in machine load hits both alike;
the native tool gets ``--no-ppl`` because lwq computes no perplexity. Both outputs are then
compared tensor by tensor. Target: median ratio ≤ 1.15.

    python benchmarks/imatrix_vs_native.py --tools PATH/TO/llama.cpp/bin [--chunks 16] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    from _common import measure, median

    import fixtures
    from lwq_app.core.modelfile.imatrix_file import read_imatrix

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", required=True, help="folder with llama-imatrix")
    ap.add_argument("--model", help="GGUF (default: the off-grid SmolLM2 fixture)")
    ap.add_argument("--text", default=str(ROOT / "resources/calibration/lwq-calibration-v1.txt"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()

    model = str(a.model or fixtures.smollm2_offgrid_f16())
    args = ["-c", str(a.ctx), "--chunks", str(a.chunks), "-b", str(a.batch), "-t", str(a.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        nat_out, lwq_out = Path(tmp) / "native.gguf", Path(tmp) / "lwq.gguf"
        native = [str(Path(a.tools) / "llama-imatrix"), "-m", model, "-f", a.text]
        native += ["-o", str(nat_out), "--no-ppl", *args]
        ours = [sys.executable, "-m", "lwq_app.cli", "imatrix", model, "-f", a.text]
        ours += ["--ctx", str(a.ctx), "--chunks", str(a.chunks), "--batch", str(a.batch)]
        ours += ["--threads", str(a.threads), "-o", str(lwq_out)]
        t_nat, t_lwq = [], []
        for i in range(a.runs):
            t_nat.append(measure(native, rss=False).seconds)
            t_lwq.append(measure(ours, rss=False).seconds)
            print(f"run {i + 1}: native {t_nat[-1]:.2f}s  lwq {t_lwq[-1]:.2f}s", flush=True)
        gold, mine = read_imatrix(nat_out), read_imatrix(lwq_out)
        worst = max(
            float(np.max(np.abs(mine.entries[n].sums - e.sums)) / np.max(np.abs(e.sums)))
            for n, e in gold.entries.items()
        )
    ratio = median(t_lwq) / median(t_nat)
    print(
        f"median native {median(t_nat):.2f}s, lwq {median(t_lwq):.2f}s, ratio {ratio:.3f} "
        f"(target <= 1.15); max relative difference of in_sum2 {worst:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
