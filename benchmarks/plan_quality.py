"""Automatic plan vs llama.cpp's stock mixes at equal size, measured by KLD.

For each stock mix (Q3_K_M, Q4_K_M, Q5_K_M with the same imatrix) the budget is the stock
plan's exact tensor-data size; the auto plan is made for that budget, both are quantized
through llama.cpp and evaluated against the F16 model (KLD over ``--chunks`` × 512 tokens of
wikitext-2 test, the evaluation issue's evaluator). Prints size, KLD stock vs auto, their
ratio and the planning time (sensitivity measurement and the solve separately).

    python benchmarks/plan_quality.py [--model M.gguf] [--imatrix I.gguf] [--chunks 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    import fixtures
    from lwq_app.core.evaluate.perplexity import cached_base_logits, kl_divergence
    from lwq_app.core.importance.sensitivity import SensitivityRequest, measure_sensitivity
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.optimize.auto_plan import Budget, solve_plan
    from lwq_app.core.optimize.calibration import CalibrateRequest, Calibration, calibrate
    from lwq_app.core.plan.quant_plan import plan_from_preset
    from lwq_app.core.plan.quantize import QuantizeRequest, quantize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="F16 source (default: the off-grid SmolLM2 fixture)")
    ap.add_argument("--imatrix", default=str(ROOT / "tests/golden/smollm2.imatrix.gguf"))
    ap.add_argument("--text", default=str(ROOT / "tests/data/wikitext-2-raw/wiki.test.raw"))
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--max-rows", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", default="Q3_K_M,Q4_K_M,Q5_K_M")
    ap.add_argument("--calibration", help="calibration JSON: used if present, else measured")
    ap.add_argument("--cal-groups", type=int, default=3, help="depth groups per tensor kind")
    ap.add_argument("--cal-chunks", type=int, default=4, help="KLD chunks per probe")
    ap.add_argument(
        "--cal-text",
        default=str(ROOT / "resources/calibration/lwq-calibration-v1.txt"),
        help="text for the calibration KLD runs (disjoint from the evaluation text)",
    )
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()

    model_path = Path(a.model) if a.model else fixtures.smollm2_offgrid_f16()
    model = open_model(model_path)
    base, _ = cached_base_logits(model_path, a.text, n_chunks=a.chunks, threads=a.threads)
    t0 = time.monotonic()
    sens = measure_sensitivity(SensitivityRequest(model_path, Path(a.imatrix), max_rows=a.max_rows))
    t_sens = time.monotonic() - t0
    factors = None
    if a.calibration:
        cal_path = Path(a.calibration)
        if not cal_path.exists():
            t2 = time.monotonic()
            request = CalibrateRequest(
                model_path, Path(a.imatrix), text=Path(a.cal_text), groups=a.cal_groups,
                chunks=a.cal_chunks, max_rows=a.max_rows, threads=a.threads, copy_to=cal_path,
            )  # fmt: skip
            cal = calibrate(
                request,
                progress=lambda p: print(f"calibration {p.position:.0%} {p.item}", flush=True),
            ).calibration
            print(f"calibration: {len(cal.points)} probes in {time.monotonic() - t2:.0f}s")
        factors = Calibration.load(cal_path).factors(model)
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        for preset in a.presets.split(","):
            stock = plan_from_preset(model, preset, with_imatrix=True)
            t1 = time.monotonic()
            auto = solve_plan(model, sens, Budget(stock.size_bytes, preset), factors=factors)
            t_plan = time.monotonic() - t1
            kld = {}
            for label, plan in (("stock", stock), ("auto", auto.plan)):
                out = Path(tmp) / f"{preset}-{label}.gguf"
                imatrix = Path(a.imatrix)
                quantize(QuantizeRequest(model_path, plan, out, imatrix=imatrix, threads=a.threads))
                r = kl_divergence(out, a.text, base, n_chunks=a.chunks, threads=a.threads)
                kld[label] = r.stats.kld
                out.unlink()
            rows.append(
                {
                    "preset": preset,
                    "size": stock.size_bytes,
                    "auto_size": auto.plan.size_bytes,
                    "kld_stock": kld["stock"],
                    "kld_auto": kld["auto"],
                    "ratio": kld["auto"] / kld["stock"],
                    "plan_seconds": t_plan,
                    "sensitivity_seconds": t_sens,
                }
            )
            r0 = rows[-1]
            print(
                f"{preset:7} size {r0['size']:>10} B (auto {r0['auto_size']:>10} B)  "
                f"KLD stock {r0['kld_stock']:.6f}  auto {r0['kld_auto']:.6f}  "
                f"ratio {r0['ratio']:.3f}  plan {t_plan:.2f}s (+ sensitivity {t_sens:.0f}s once)",
                flush=True,
            )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
