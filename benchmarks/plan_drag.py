"""One drag step on the plan grid of an 80-layer model: what the GUI thread does, timed.

A drag step is: ``step_plan`` (the core moves each tensor of the selection along its ladder),
``plan_grid`` (the core's layout of the new plan), the readouts (``ReadoutContext.readout``:
file size, bpw, nearest preset, predicted KLD), ``PlanGridView.show_grid`` and a synchronous
repaint of the canvas. Target: ≤ 16 ms a step (one frame at 60 Hz), at 1440×900 with every
row visible and at the default window size. Offscreen unless ``DISPLAY`` is set.

    python benchmarks/plan_drag.py [--layers 80] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=80)
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    from PySide6.QtWidgets import QApplication

    import fixtures
    from lwq_app.core.importance import SensitivityRequest, measure_sensitivity
    from lwq_app.core.modelfile import open_model
    from lwq_app.core.optimize import KldPredictor, ReadoutContext
    from lwq_app.core.plan import plan_from_preset, plan_grid, plan_ladders, step_plan
    from lwq_app.gui.views.plan_grid import PlanGridView

    model = open_model(fixtures.deep_model(a.layers))
    plan = plan_from_preset(model, "Q4_K_M", with_imatrix=False)
    ladders = plan_ladders(plan, False)
    sens = measure_sensitivity(SensitivityRequest(model.path, None, max_rows=16))
    readouts = ReadoutContext(model, with_imatrix=False, predictor=KldPredictor(sens, None, model))
    app = QApplication.instance() or QApplication([])
    view = PlanGridView()
    n_quant = len(plan.quantized_tensors())
    print(f"{model.path.name}: {a.layers} layers, {n_quant} quantized tensors")
    for size in ((1440, 900), (1440, 80 * 24 + 200)):
        view.resize(*size)
        view.show()
        view.show_grid(plan_grid(plan))
        app.processEvents()
        layout = plan_grid(plan)
        rows = list(range(len(layout.layers)))
        cases = {
            "one cell": [layout.row_names(len(rows) // 2)[0]],
            "a layer (row header)": layout.row_names(len(rows) // 2),
            "a kind (column header)": layout.column_names(0),
            "everything": layout.names_in(rows, range(len(layout.kinds))),
        }
        for label, names in cases.items():
            times = []
            for k in range(a.steps):
                t0 = time.perf_counter()
                stepped = step_plan(plan, names, 1 + k % 3, ladders)
                view.show_grid(plan_grid(stepped))
                readouts.readout(stepped)
                view.canvas().repaint()
                times.append((time.perf_counter() - t0) * 1000)
            t = np.array(times)
            print(f"{size[0]}×{size[1]:<5} {label:<24} {len(names):4d} tensors   "
                  f"median {np.median(t):5.1f} ms   p99 {np.percentile(t, 99):5.1f} ms   "
                  f"max {t.max():5.1f} ms   (target ≤ 16 ms)")  # fmt: skip
    view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
