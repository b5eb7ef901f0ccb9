"""How long the GUI thread goes without an event while the app's heavy jobs run.

A 10 ms timer on the GUI thread records the gaps between its ticks during the three
long jobs of the first steps — the F16 upcast of a quantized source (on open), imatrix
collection and the sensitivity measurement — run through the real window on SmolLM2.
Target: max gap ≤ 100 ms (p99 printed too). Offscreen unless ``DISPLAY`` is set.

    python benchmarks/gui_heartbeat.py [--chunks 8] [--rows 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "gui"))


def start_sampler(out: list[str]) -> None:
    """A thread that records the GUI thread's stack while no event has run for 50 ms."""
    import threading
    import traceback

    from PySide6.QtCore import Qt, QTimer

    main_id = threading.main_thread().ident
    last = [time.perf_counter()]
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(10)
    timer.timeout.connect(lambda: last.__setitem__(0, time.perf_counter()))
    timer.start()
    start_sampler.keep = timer  # type: ignore[attr-defined]

    def watch() -> None:
        while True:
            time.sleep(0.01)
            if time.perf_counter() - last[0] > 0.05:
                frames = sys._current_frames()
                me = threading.get_ident()
                text = ""
                for ident, frame in frames.items():
                    if ident == me:
                        continue
                    who = "GUI thread" if ident == main_id else f"thread {ident}"
                    text += f"  [{who}]\n" + "".join(traceback.format_stack(frame)[-4:])
                out.append(text)
                time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--rows", type=int, default=64, help="rows sampled per tensor (sensitivity)")
    ap.add_argument("--same-priority", action="store_true",
                    help="children at the window's priority (the app runs them nicer)")  # fmt: skip
    ap.add_argument("--stacks", action="store_true",
                    help="print the GUI thread's stack whenever it is 50 ms late (diagnosis)")  # fmt: skip
    a = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    data = tempfile.mkdtemp(prefix="lwq-hb-data-")
    os.environ["LWQ_DATA_DIR"] = data
    os.environ["LWQ_CACHE_DIR"] = tempfile.mkdtemp(prefix="lwq-hb-cache-")

    from heartbeat import Heartbeat
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    import fixtures
    from lwq_app.core.jobs.child_runner import set_child_niceness
    from lwq_app.gui.app import CHILD_NICENESS, build_context, make_application
    from lwq_app.gui.context import Step
    from lwq_app.gui.main_window import MainWindow

    set_child_niceness(0 if a.same_priority else CHILD_NICENESS)  # what the app does
    source = fixtures.smollm2_q4_1()
    app = make_application()
    ctx = build_context(QSettings(str(Path(data) / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(ctx, restore_layout=False)
    window.resize(1440, 900)
    window.show()

    def until(cond: Callable[[], bool], timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if ctx.notifier.messages and ctx.notifier.messages[-1].level.value == "error":
                raise SystemExit(f"error: {ctx.notifier.messages[-1].text}")
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            app.processEvents()
            time.sleep(0.002)

    stalls: list[str] = []
    if a.stacks:
        start_sampler(stalls)

    def measure(label: str, start: Callable[[], None]) -> None:
        stalls.clear()
        hb = Heartbeat()
        hb.start()
        t0 = time.monotonic()
        start()
        until(lambda: bool(ctx.runner.running))
        until(lambda: not ctx.runner.running)
        hb.stop()
        print(f"{label:<34} {time.monotonic() - t0:6.1f} s   max gap {hb.max_gap_ms:6.1f} ms   "
              f"p99 {hb.p99_gap_ms:5.1f} ms   ({hb.ticks} ticks; target max <= 100 ms)")  # fmt: skip
        for st in dict.fromkeys(stalls):
            print("  GUI thread late, at:\n" + st)

    imp = window.page(Step.IMPORTANCE)
    measure("upcast on open (Q4_1 -> F16)", lambda: window.open_path(source))
    hb = Heartbeat().start()
    window.go_to(Step.IMPORTANCE)  # the page's first show builds and paints its plots
    settle = time.monotonic() + 1.0
    while time.monotonic() < settle:
        app.processEvents()
        time.sleep(0.002)
    hb.stop()
    print(f"{'first show of the Importance page':<34} {'':8}   max gap {hb.max_gap_ms:6.1f} ms"
          "   (a one-time layout and first paint, not a job)")  # fmt: skip
    measure(f"imatrix collection ({a.chunks} chunks)", lambda: imp.collect(chunks=a.chunks))
    measure(f"sensitivity ({a.rows} rows/tensor)", lambda: imp.measure_sensitivity(a.rows))
    window.close()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
