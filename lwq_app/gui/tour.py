"""``lwq gui --tour DIR [MODEL]``: the real app driven through every step, one PNG a step.

For screenshots (the README's) and smoke tests (CI runs it offscreen on three models). The
tour does what a user would do, through the same controls: open the model, look at the
target, collect importance on the bundled text, switch to log scale, measure sensitivity,
click a cell; then the plan: the stock mix, Auto for its size on disk, one drag two steps up
(shot mid-drag: the preview), quantize (the variant lands in the project); then Run (its
checks, and Quantize & check of the stock Q4_K_M, with small counts) and Results (the table
and the size-vs-KLD scatter). It runs the quick profile (2 imatrix chunks, row-sampled sensitivity) and
waits on what the window shows, never on timers alone. Each step saves ``NN-step.png`` at
1440×900; a step that fails (an error message in the window, a timeout) ends the tour with
exit code 1 and the message on stderr.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QSplitter, QWidget

from lwq_app.core.hub.defaults import default_eval_text
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.results.eval_settings import EvalSettings, TaskSetting
from lwq_app.core.results.run_queue import (
    JobState,
    bench_entry,
    chained,
    eval_entry,
    task_entry,
)
from lwq_app.core.results.variants import stock_mix_output

from .context import AppContext, Step
from .notifier import Level, Message
from .views.plan_grid import STEP_PX

SIZE = (1440, 900)
#: seconds a step may take before the tour calls it failed
STEP_TIMEOUT = 150.0
#: tasks the tour scores per benchmark (a small count: the tour is a smoke test too)
TOUR_TASKS = 10


class TourFailed(Exception):
    """A step did not reach its state; the message says which and why."""


class Tour:
    def __init__(self, window: Any, ctx: AppContext, out_dir: Path) -> None:
        self.window = window
        self.ctx = ctx
        self.out = Path(out_dir)
        self.n = 0
        self.errors: list[Message] = []
        self.shots: list[Path] = []
        ctx.notifier.message_posted.connect(self._on_message)

    def _on_message(self, msg: Message) -> None:
        if msg.level is Level.ERROR:
            self.errors.append(msg)

    # -- waiting ------------------------------------------------------------------------
    def wait(self, what: str, cond: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> None:
        """Run the event loop until ``cond()`` holds; fail on an error message or timeout."""
        deadline = time.monotonic() + timeout
        loop = QEventLoop()
        timer = QTimer()
        timer.setInterval(20)
        timer.timeout.connect(loop.quit)
        timer.start()
        try:
            while True:
                if self.errors:
                    m = self.errors[0]
                    raise TourFailed(f"{what}: {m.title}: {m.text}")
                if cond():
                    return
                if time.monotonic() > deadline:
                    raise TourFailed(f"{what}: not done after {timeout:.0f} s")
                loop.exec()
        finally:
            timer.stop()

    def idle(self) -> bool:
        return not self.ctx.runner.running

    def settle(self) -> None:
        """Let layouts and plots catch up before a screenshot."""
        for _ in range(3):
            QApplication.processEvents()
            QTest.qWait(30)

    def shot(self, name: str) -> Path:
        self.n += 1
        self.settle()
        path = self.out / f"{self.n:02d}-{name}.png"
        pix = self.window.grab()
        if not pix.save(str(path)):
            raise TourFailed(f"screenshot {path}: could not be written")
        self.shots.append(path)
        print(f"tour: {path.name}", file=sys.stderr)
        return path

    # -- the steps ------------------------------------------------------------------------
    def run(self, model: Path | None) -> None:
        w, ctx = self.window, self.ctx
        self.out.mkdir(parents=True, exist_ok=True)
        w.resize(*SIZE)
        self.settle()
        self.shot("start")
        if model is not None:
            w.open_path(model)
        self.wait("open the model", lambda: ctx.session.is_open and self.idle())
        w.go_to(Step.MODEL)
        self.shot("model")

        w.go_to(Step.TARGET)
        target = w.page(Step.TARGET)
        self.wait("the memory fit", lambda: target.last_fit is not None and self.idle())
        self.shot("target")

        w.go_to(Step.IMPORTANCE)
        imp = w.page(Step.IMPORTANCE)
        imp.collect(chunks=2)
        self.wait("collection starts", lambda: bool(ctx.runner.running))
        self.wait(
            "collection progress",
            lambda: any(j.progress is not None and j.progress.position > 0
                        for j in ctx.runner.running) or self.idle(),
        )  # fmt: skip
        self.shot("importance-collecting")
        self.wait("the importance heatmap", lambda: imp.is_done() and self.idle())
        self.wait("the heatmap drawn", lambda: imp.heatmap.displayed_array().size > 0)
        self.shot("importance")

        imp.log_box.setChecked(not imp.log_box.isChecked())  # the other scale of the two
        self.wait("the heatmap redrawn", lambda: imp.heatmap.displayed_array().size > 0)
        self.shot("importance-linear" if not imp.log_box.isChecked() else "importance-log")
        imp.log_box.setChecked(True)  # sensitivity spans decades: log scale

        imp.set_statistic(imp.sensitivity_statistic())
        self.wait("the sensitivity heatmap",
                  lambda: self.idle() and imp.heatmap.label().startswith("sensitivity"))  # fmt: skip
        self.shot("sensitivity")

        hm = imp.heatmap
        rows, cols = hm.displayed_array().shape
        self.click_cell(hm, rows // 2, cols - 1)
        self.wait("the tensor details", lambda: bool(imp.details_text()))
        self.shot("tensor-details")
        self.plan_steps()

    def plan_steps(self) -> None:
        """The plan editor: the stock mix, Auto for a budget, one drag, quantize."""
        w, ctx = self.window, self.ctx
        w.go_to(Step.PLAN)
        page = w.page(Step.PLAN)
        self.wait("the plan's readouts",
                  lambda: page.plan_actions.predictor is not None and self.idle()
                  and page.readouts.readout is not None)  # fmt: skip
        self.shot("plan")

        before = page.editor.plan  # the stock Q4_K_M: Auto for the same size on disk
        page.auto.set_kind("file", f"{page.readouts.readout.file_size.total}B")
        page.auto.button.click()
        self.wait("the auto plan", lambda: page.editor.plan is not before and self.idle())
        self.shot("plan-auto")

        grid, auto = page.grid, page.editor.plan
        layout, ladders = grid.grid(), page.ladders(auto)
        i = len(layout.layers) // 2  # a middle layer's cell with more bits above it: up
        room = [j for j, c in enumerate(layout.cells[i])
                if c is not None and c.effective in ladders[c.name][:-1]]  # fmt: skip
        j, sign = (room[0], -1) if room else (0, 1)  # all at the top (a tiny model): down
        start = grid.cell_center(i, j)
        canvas = grid.canvas()
        mouse(canvas, QMouseEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton)
        for dy in range(4, 2 * STEP_PX + 5, 4):
            mouse(canvas, QMouseEvent.Type.MouseMove, start + QPoint(0, sign * dy),
                  Qt.MouseButton.LeftButton)  # fmt: skip
            QTest.qWait(2)
        self.shot("plan-drag")  # the preview: grid and readouts of the plan under the mouse
        end = start + QPoint(0, sign * (2 * STEP_PX + 4))
        mouse(canvas, QMouseEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)
        self.wait("the drag applied", lambda: page.editor.plan is not auto)

        folder, name = page.plan_actions.default_output()
        page.plan_actions.quantize(folder / name)
        self.wait("quantize starts", lambda: bool(ctx.runner.running))
        self.wait("quantize progress",
                  lambda: any(j.progress is not None and j.progress.position > 0
                              for j in ctx.runner.running) or self.idle())  # fmt: skip
        self.shot("quantize-running")
        self.wait("the variant", lambda: bool(page.plan_actions.variants()) and self.idle())
        self.shot("quantized")
        self.run_results_steps()

    def run_results_steps(self) -> None:
        """Run and Results with small counts: the made variant's checks and Quantize & check
        of the stock Q4_K_M queued; the Run page while they run, then the results table and
        the size-vs-KLD scatter."""
        w, ctx = self.window, self.ctx
        state, model = ctx.session.state, ctx.session.model
        assert state is not None and model is not None and state.variants
        folder = ctx.session.folder
        assert folder is not None
        tasks = folder / "tour-hellaswag.txt"  # the project's, not beside the screenshots
        write_tour_tasks(tasks, TOUR_TASKS)
        settings = EvalSettings(
            text=default_eval_text().path,
            n_chunks=2,
            tasks=(TaskSetting("hellaswag", tasks, TOUR_TASKS),),
            bench_tests=((64, 0), (0, 16)),
            bench_repetitions=1,
        )
        results = w.page(Step.RESULTS)
        results.save_settings(settings)
        made = state.variants[-1].path
        queue = ctx.queue
        queue.add(
            chained(
                [
                    eval_entry(made, state.base_model, settings),
                    *(task_entry(made, t.name, settings) for t in settings.tasks),
                    bench_entry(made, settings),
                ]
            )
        )
        stock = plan_from_preset(model, "Q4_K_M", with_imatrix=state.imatrix is not None)
        queue.quantize_and_check(stock, stock_mix_output(made.parent, model, "Q4_K_M"), "Q4_K_M")
        w.go_to(Step.RUN)
        self.wait("the queue runs", lambda: any(e.state is JobState.RUNNING for e in queue.entries)
                  and any(j.progress is not None for j in ctx.runner.running))  # fmt: skip
        self.shot("run-queue")
        finished = (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED)
        self.wait("the checks", lambda: all(e.state in finished for e in queue.entries)
                  and self.idle(), timeout=2 * STEP_TIMEOUT)  # fmt: skip
        failed = [e for e in queue.entries if e.state is not JobState.DONE]
        if failed:
            raise TourFailed(
                f"the checks: {failed[0].title}: {failed[0].state.value} {failed[0].error}"
            )
        self.shot("run-done")
        w.go_to(Step.RESULTS)
        results.rebuild()
        self.wait("the results table", lambda: results.is_done() and self.idle()
                  and results.table is not None and len(results.table.rows) >= 3)  # fmt: skip
        split = results.findChild(QSplitter)
        if split is not None:  # as a user would: drag the list narrower to see more columns
            split.setSizes([200, SIZE[0]])
        results.tabs.setCurrentWidget(results.results)
        self.shot("results")
        results.tabs.setCurrentWidget(results.scatter)
        self.shot("results-scatter")

    def click_cell(self, hm: Any, i: int, j: int) -> None:
        view = hm.graphics_view()
        pos = view.mapFromScene(hm.scene_pos_of_cell(i, j))
        QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier(0),
                         QPoint(int(pos.x()), int(pos.y())))  # fmt: skip


def write_tour_tasks(path: Path, n: int) -> None:
    """``n`` HellaSwag-format tasks (context, gold, 4 endings) the tour scores: the right
    ending continues a repeated 3-word cycle, the wrong ones do not."""
    rng = random.Random(0)
    words = ["red", "green", "blue", "black", "white", "yellow", "orange", "purple"]
    lines: list[str] = []
    for _ in range(n):
        cycle = rng.sample(words, 3)
        gold = rng.randrange(4)
        wrong = [" ".join(rng.sample(words, 2)) + " zebra" for _ in range(3)]
        lines += [" ".join(cycle * 4), str(gold), *wrong[:gold], " ".join(cycle * 2), *wrong[gold:]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def mouse(
    widget: QWidget,
    kind: QMouseEvent.Type,
    pos: QPoint,
    buttons: Qt.MouseButton,
    mods: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier,
) -> None:
    """One real mouse event at ``pos`` with the left button as the event's button (none for a
    move), sent straight to ``widget``: QTest's moves carry no held buttons, a drag needs
    them. The tour, the benchmarks and the GUI tests drive drags with it."""
    press = kind is not QMouseEvent.Type.MouseMove
    button = Qt.MouseButton.LeftButton if press else Qt.MouseButton.NoButton
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons, mods)
    QApplication.sendEvent(widget, ev)


def run_tour(window: QWidget, ctx: AppContext, out_dir: str | Path, model: Any = None) -> int:
    """Drive the app through every step; 0 when all screenshots were taken."""
    tour = Tour(window, ctx, Path(out_dir))
    try:
        tour.run(None if model is None else Path(model))
    except TourFailed as e:
        print(f"lwq: error: tour step {tour.n + 1} failed: {e}", file=sys.stderr)
        return 1
    print(f"tour: {len(tour.shots)} screenshots in {tour.out}", file=sys.stderr)
    return 0
