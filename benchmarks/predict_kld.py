"""Predicted KLD (``predict_kld``) against measured KLD, on five plans of SmolLM2.

The stock Q3_K_M, Q4_K_M and Q5_K_M mixes and two auto plans (4.0 and 5.0 bpw, planned with
the calibration as ``plan --auto`` plans) are quantized with the golden imatrix through
llama.cpp and evaluated against the F16 model (KLD over ``--chunks`` × 512 tokens of
wikitext-2 test, the evaluator of ``lwq eval``). Each plan's prediction is computed with the
calibration (measured here with ``calibrate(groups=1, chunks=1)`` on the bundled calibration
text, disjoint from the evaluation text, unless ``--calibration`` names one) and without it
(the raw proxy). Prints the five (predicted, measured) pairs and the Spearman and Pearson
correlations of each prediction with the measurement.

    python benchmarks/predict_kld.py [--chunks 10] [--max-rows 256] [--calibration C.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def spearman(x: list[float], y: list[float]) -> float:
    """Rank correlation (average ranks for ties)."""

    def ranks(v: list[float]) -> np.ndarray:
        a = np.asarray(v, dtype=float)
        order = a.argsort()
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=float)
        for value in np.unique(a):  # ties share their mean rank
            same = a == value
            r[same] = r[same].mean()
        return r

    return pearson(list(ranks(x)), list(ranks(y)))


def pearson(x: list[float], y: list[float]) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="F16 source (default: the off-grid SmolLM2 fixture)")
    ap.add_argument("--imatrix", default=str(ROOT / "tests/golden/smollm2.imatrix.gguf"))
    ap.add_argument("--text", default=str(ROOT / "tests/data/wikitext-2-raw/wiki.test.raw"))
    ap.add_argument("--chunks", type=int, default=10, help="KLD chunks of 512 tokens")
    ap.add_argument("--max-rows", type=int, default=256, help="rows sampled per tensor")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bpw", default="4.0,5.0", help="bits per weight of the auto plans")
    ap.add_argument("--calibration", help="calibration JSON: used if present, else measured")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()

    # the calibration goes to a project folder: a temporary one, not the user's
    data = tempfile.mkdtemp(prefix="lwq-predict-kld-")
    os.environ.setdefault("LWQ_DATA_DIR", data)

    import fixtures
    from lwq_app.core.evaluate.perplexity import cached_base_logits, kl_divergence
    from lwq_app.core.importance.sensitivity import SensitivityRequest, measure_sensitivity
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.optimize import (
        BpwBudget,
        CalibrateRequest,
        Calibration,
        KldPredictor,
        budget_from_bpw,
        calibrate,
        solve_plan,
    )
    from lwq_app.core.plan import QuantizeRequest, plan_from_preset, quantize

    model_path = Path(a.model) if a.model else fixtures.smollm2_offgrid_f16()
    imatrix = Path(a.imatrix)
    model = open_model(model_path)
    t0 = time.monotonic()
    base, _ = cached_base_logits(model_path, a.text, n_chunks=a.chunks, threads=a.threads)
    print(f"base logits: {time.monotonic() - t0:.0f}s", flush=True)
    t0 = time.monotonic()
    sens = measure_sensitivity(SensitivityRequest(model_path, imatrix, max_rows=a.max_rows))
    print(f"sensitivity ({a.max_rows} rows): {time.monotonic() - t0:.0f}s", flush=True)
    cal_path = Path(a.calibration) if a.calibration else None
    if cal_path is not None and cal_path.exists():
        cal = Calibration.load(cal_path)
    else:
        t0 = time.monotonic()
        request = CalibrateRequest(
            model_path, imatrix, groups=1, chunks=1, max_rows=a.max_rows, threads=a.threads,
            copy_to=cal_path,
        )  # fmt: skip
        cal = calibrate(request).calibration
        print(f"calibration: {len(cal.points)} probes in {time.monotonic() - t0:.0f}s", flush=True)
    cal.check(cal_path or "calibration", sens.model_hash, sens.imatrix_hash)
    calibrated = KldPredictor(sens, cal, model)
    raw = KldPredictor(sens, None, model)
    factors = cal.factors(model)

    plans = {
        p: plan_from_preset(model, p, with_imatrix=True) for p in ("Q3_K_M", "Q4_K_M", "Q5_K_M")
    }
    for bpw in (float(x) for x in a.bpw.split(",")):
        budget = budget_from_bpw(model, BpwBudget(bpw).bpw)
        plans[f"auto {bpw:g} bpw"] = solve_plan(model, sens, budget, factors=factors).plan
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=ROOT / ".cache") as tmp:
        for label, plan in plans.items():
            out = Path(tmp) / "plan.gguf"
            t0 = time.monotonic()
            quantize(QuantizeRequest(model_path, plan, out, imatrix=imatrix, threads=a.threads))
            t_q = time.monotonic() - t0
            k = kl_divergence(out, a.text, base, n_chunks=a.chunks, threads=a.threads)
            out.unlink()
            row = {
                "plan": label,
                "tensor_bytes": plan.size_bytes,
                "bpw": plan.bpw,
                "measured_kld": float(k.stats.kld),
                "predicted_kld": calibrated.predict(plan).value,
                "proxy": raw.predict(plan).value,
                "quantize_seconds": t_q,
            }
            rows.append(row)
            print(
                f"{label:14} {row['bpw']:.3f} bpw  measured KLD {row['measured_kld']:.5f}  "
                f"predicted {row['predicted_kld']:.5f}  proxy {row['proxy']:.5g}  "
                f"(quantize {t_q:.0f}s)",
                flush=True,
            )
    measured = [r["measured_kld"] for r in rows]
    print()
    print("| plan | bpw | measured KLD | predicted KLD (calibrated) | proxy (uncalibrated) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['plan']} | {r['bpw']:.3f} | {r['measured_kld']:.4f} | "
            f"{r['predicted_kld']:.4f} | {r['proxy']:.4g} |"
        )
    stats = {}
    for key in ("predicted_kld", "proxy"):
        pred = [r[key] for r in rows]
        stats[key] = {"spearman": spearman(pred, measured), "pearson": pearson(pred, measured)}
        print(f"{key}: Spearman {stats[key]['spearman']:.3f}, Pearson {stats[key]['pearson']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "correlation": stats}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
