"""The Plan step's jobs: what the readouts need, Auto, calibrate, quantize and the plan files.

Everything here starts a core job through the worker bridge and hands its result to the
``PlanEditor`` (as one undo step) or to the readouts: the sensitivity (cached on disk by the
core, shared with the Importance step and Auto), the target fit (llama.cpp's buffers, cached),
the calibration (found in the project, or measured by Calibrate), the imatrix statistics for
the overlay. File reads and writes (plan JSON, llama-quantize recipes, a GGUF's types) run as
jobs too: a header read of a large GGUF must not stall the window.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QWidget

from lwq_app.core.evaluate import TargetFit, TargetFitRequest, target_fit
from lwq_app.core.importance import (
    ImatrixStats,
    Sensitivity,
    SensitivityRequest,
    StatisticsRequest,
    imatrix_statistics,
    measure_sensitivity,
)
from lwq_app.core.jobs import LwqError
from lwq_app.core.optimize import (
    AutoPlanRequest,
    AutoPlanResult,
    BudgetSpec,
    CalibrateRequest,
    Calibration,
    KldPredictor,
    ReadoutContext,
    auto_plan,
    calibrate,
)
from lwq_app.core.plan import (
    QuantizeRequest,
    QuantizeResult,
    QuantPlan,
    import_recipe,
    load_plan,
    make_recipe,
    plan_from_gguf,
    quantize,
)
from lwq_app.core.results.project import Variant, find_calibration, now_stamp

from ..context import AppContext
from ..plan_editor import PlanEditor
from ..worker import Job
from .quantize_dialog import QuantizeDialog

#: rows per tensor of the sensitivity in a quick (tour, smoke test) profile
QUICK_ROWS = 32
RECIPE_FILTER = "llama-quantize tensor types (*.txt);;All files (*)"
PLAN_FILTER = "lwq plans (*.json);;All files (*)"


class PlanActions(QObject):
    """Jobs of the Plan step; ``inputs_changed`` when the readouts' inputs change."""

    inputs_changed = Signal()
    checks_queued = Signal()  # Quantize & check put the plan's chain on the run queue

    def __init__(self, ctx: AppContext, editor: PlanEditor, parent: QWidget) -> None:
        super().__init__(parent)
        self._ctx, self._editor, self._page = ctx, editor, parent
        self.predictor: KldPredictor | None = None
        self.sensitivity: Sensitivity | None = None
        self.calibration: Calibration | None = None
        self.fit: TargetFit | None = None
        self.stats: ImatrixStats | None = None
        self._readout: ReadoutContext | None = None
        self._readout_key: tuple[Any, ...] | None = None
        self._readout_pending: tuple[Any, ...] | None = None
        self._keys: dict[str, object] = {}  # job kind -> the inputs its result is for
        self.jobs: dict[str, Job] = {}
        ctx.session.closed.connect(self._forget)

    def _forget(self) -> None:
        for job in self.jobs.values():
            job.cancel.cancel()
        self.predictor = self.sensitivity = self.calibration = self.fit = self.stats = None
        self._readout, self._keys = None, {}
        self._readout_key = self._readout_pending = None

    # -- inputs of the readouts ---------------------------------------------------------------
    def with_imatrix(self) -> bool:
        state = self._ctx.session.state
        return state is not None and state.imatrix is not None

    def _rows(self) -> int:
        return QUICK_ROWS if self._ctx.quick else SensitivityRequest.max_rows

    def ensure_inputs(self, started: bool = True) -> None:
        """Start the jobs whose inputs changed (the sensitivity only once the page is seen)."""
        session = self._ctx.session
        model, state = session.model, session.state
        if model is None or state is None:
            return
        imx = state.imatrix
        sens_key = (model.path, imx, self._rows())
        if started and self._keys.get("sensitivity") != sens_key:
            self._keys["sensitivity"] = sens_key
            self._start(
                "sensitivity", "Sensitivity for the plan", measure_sensitivity,
                SensitivityRequest(model.path, imx, max_rows=self._rows()), self._on_sensitivity,
            )  # fmt: skip
        fit_key = (model.path, state.target)
        if state.target is not None and self._keys.get("fit") != fit_key:
            self._keys["fit"] = fit_key
            self._start(
                "fit", "Fit the plan to the target", target_fit,
                TargetFitRequest(model.path, state.target), self._on_fit,
            )  # fmt: skip
        elif state.target is None and self.fit is not None:
            self.fit, self._keys["fit"] = None, None
            self._changed()

    def _start(self, kind: str, title: str, fn: Any, request: Any, done: Any) -> Job:
        def failed(_e: BaseException | None = None) -> None:
            self._keys.pop(kind, None)  # the next ensure_inputs starts it again

        job = self._ctx.runner.submit(
            title, fn, request, on_result=done, on_error=failed, on_cancel=failed
        )
        self.jobs[kind] = job
        return job

    def _on_sensitivity(self, sens: Sensitivity) -> None:
        self.sensitivity = sens
        found = find_calibration(sens.model_hash, sens.imatrix_hash) if sens.imatrix_hash else None
        self.calibration = None
        if found is not None:
            try:
                cal = Calibration.load(found)
                cal.check(found, sens.model_hash, sens.imatrix_hash)
                self.calibration = cal
            except LwqError as e:  # a stale or damaged file is reported, the proxy used
                self._ctx.notifier.report(e, "Read the calibration")
        self.predictor = KldPredictor(sens, self.calibration, self._ctx.session.model)
        self._changed()

    def _on_fit(self, fit: TargetFit) -> None:
        self.fit = fit
        self._changed()

    def _changed(self) -> None:
        self.inputs_changed.emit()

    def readout_context(self) -> ReadoutContext | None:
        """The core's readouts for the current inputs. Building one sizes every stock mix
        (67 ms on 80 layers), so it is a job: until it is done, the previous one for this
        model (one input behind, for a moment) or None."""
        model, state = self._ctx.session.model, self._ctx.session.state
        if model is None or state is None:
            return None
        key = (model.path, state.imatrix, self.fit, self.predictor)  # held: no reused id()
        if self._readout is not None and self._readout_key == key:
            return self._readout
        if self._readout_pending != key:
            self._readout_pending = key
            build = partial(ReadoutContext, model, with_imatrix=state.imatrix is not None,
                            fit=self.fit, predictor=self.predictor, imatrix=state.imatrix)  # fmt: skip

            def done(ctx: ReadoutContext) -> None:
                if self._readout_pending == key:
                    self._readout, self._readout_key = ctx, key
                    self.inputs_changed.emit()

            self._ctx.runner.submit_call("Plan readouts", build, on_result=done)
        same_model = self._readout_key is not None and self._readout_key[0] == model.path
        return self._readout if same_model else None

    def can_calibrate(self) -> bool:
        return self.with_imatrix() and "calibrate" not in self._running()

    def _running(self) -> set[str]:
        return {k for k, j in self.jobs.items() if not j.done}

    # -- overlay ------------------------------------------------------------------------------
    def overlay_source(self, key: str) -> ImatrixStats | Sensitivity | None:
        return self.sensitivity if key.startswith("sensitivity:") else self.stats

    def request_overlay(self, key: str) -> None:
        state = self._ctx.session.state
        if key.startswith("sensitivity:") or state is None or state.imatrix is None:
            return  # the sensitivity comes with the page; without an imatrix there is none
        if self._keys.get("stats") != state.imatrix:
            self._keys["stats"] = state.imatrix
            self._start("stats", "imatrix statistics", imatrix_statistics,
                        StatisticsRequest(state.imatrix), self._on_stats)  # fmt: skip

    def _on_stats(self, stats: ImatrixStats) -> None:
        self.stats = stats
        self.inputs_changed.emit()

    # -- Auto and calibrate --------------------------------------------------------------------
    def run_auto(self, spec: BudgetSpec) -> Job | None:
        model, state = self._ctx.session.model, self._ctx.session.state
        if model is None or state is None:
            return None
        request = AutoPlanRequest(model.path, spec, state.imatrix, max_rows=self._rows())

        def done(r: AutoPlanResult) -> None:
            self._editor.apply(r.plan, f"Auto for {r.budget.label}")

        return self._start("auto", "Auto plan", auto_plan, request, done)

    def calibrate(self) -> Job | None:
        model, state = self._ctx.session.model, self._ctx.session.state
        if model is None or state is None or state.imatrix is None:
            return None
        quick = {"groups": 1, "chunks": 1, "max_rows": QUICK_ROWS} if self._ctx.quick else {}
        request = CalibrateRequest(model.path, state.imatrix, **quick)  # type: ignore[arg-type]

        def done(_r: Any) -> None:
            self._keys.pop("sensitivity", None)  # reload: the calibration is found with it
            self.ensure_inputs()

        return self._start("calibrate", "Calibrate the KLD prediction", calibrate, request, done)

    # -- quantize ------------------------------------------------------------------------------
    def variants(self) -> tuple[Variant, ...]:
        state = self._ctx.session.state
        return () if state is None else state.variants

    def default_output(self) -> tuple[Path, str]:
        session = self._ctx.session
        assert session.folder is not None and session.model is not None

        def slug(text: str) -> str:
            return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-")

        model = session.model  # its name, not base-f16 (the upcast of a quantized source)
        stem = slug(model.name) or model.path.stem
        return session.folder, f"{stem}-{slug(self._editor.name)}.gguf"

    def _ask_output(self, check: bool = False) -> Path | None:
        """The output file, from the quantize dialog (None: no plan, or not accepted)."""
        plan, ctx = self._editor.plan, self.readout_context()
        if plan is None:
            return None
        folder, name = self.default_output()
        size = None if ctx is None else ctx.readout(plan).file_size.total
        dialog = QuantizeDialog(folder, name, size, self._page)
        if check:
            dialog.setWindowTitle("Quantize & check the plan")
        return dialog.output() if dialog.exec() else None

    def quantize_dialog(self) -> None:
        if (out := self._ask_output()) is not None:
            self.quantize(out)

    def quantize_and_check_dialog(self) -> None:
        if (out := self._ask_output(check=True)) is not None:
            self.quantize_and_check(out)

    def quantize_and_check(self, output: Path) -> None:
        """Queue quantize → PPL/KLD → benchmarks → bench of the current plan on the Run step
        (the output's checks are the quantize job's own, as for Quantize)."""
        plan = self._editor.plan
        if plan is None or self._ctx.session.model is None:
            return
        self._ctx.queue.quantize_and_check(plan, output, self._editor.name)
        self.checks_queued.emit()

    def quantize(self, output: Path) -> Job | None:
        model, state, plan = self._ctx.session.model, self._ctx.session.state, self._editor.plan
        if model is None or state is None or plan is None:
            return None
        plan_name = self._editor.name

        def done(r: QuantizeResult) -> None:
            st = self._ctx.session.state
            if st is None:
                return
            v = Variant(r.output.stem, r.output, plan_name, r.plan.content_hash(),
                        r.output.stat().st_size, now_stamp())  # fmt: skip
            self._ctx.session.set_state(st.with_variant(v))
            self._ctx.notifier.info("Quantize", f"Wrote {r.output} ({r.seconds:.1f} s)")

        request = QuantizeRequest(model.path, plan, output, state.imatrix)
        return self._start("quantize", f"Quantize {output.name}", quantize, request, done)

    # -- files ---------------------------------------------------------------------------------
    def file_menu(self, parent: QWidget) -> QMenu:
        menu = QMenu(parent)
        menu.addAction("Load plan JSON…", self.load_dialog)
        menu.addAction("Save plan JSON…", self.save_dialog)
        menu.addSeparator()
        menu.addAction("Import llama-quantize recipe…", self.import_dialog)
        menu.addAction("Export llama-quantize recipe…", self.export_dialog)
        menu.addSeparator()
        menu.addAction("Read types from a quantized GGUF…", self.gguf_dialog)
        return menu

    def _file_job(self, title: str, fn: Any, *args: Any, done: Any) -> Job:
        return self._ctx.runner.submit_call(title, partial(fn, *args), on_result=done)

    def _applied(self, text: str) -> Callable[[QuantPlan], None]:
        def apply(plan: QuantPlan) -> None:
            self._editor.apply(plan, text)

        return apply

    def load_plan(self, path: Path) -> Job | None:
        model = self._editor.model
        if model is None:
            return None
        return self._file_job(f"Load {path.name}", load_plan, path, model,
                              done=self._applied(f"Load {path.name}"))  # fmt: skip

    def import_recipe(self, path: Path, base_ftype: str, pure: bool = False) -> Job | None:
        model = self._editor.model
        if model is None:
            return None
        fn = lambda: import_recipe(path, model, base_ftype, pure=pure,  # noqa: E731
                                   with_imatrix=self.with_imatrix())  # fmt: skip
        return self._file_job(f"Import {path.name}", fn, done=self._applied(f"Import {path.name}"))

    def read_gguf(self, path: Path) -> Job | None:
        model = self._editor.model
        if model is None:
            return None
        return self._file_job(f"Read {path.name}", plan_from_gguf, path, model,
                              done=self._applied(f"Types of {path.name}"))  # fmt: skip

    def save_plan(self, path: Path) -> Job | None:
        plan = self._editor.plan
        if plan is None:
            return None
        return self._file_job(f"Save {path.name}", plan.save, path,
                              done=lambda _r: self._ctx.notifier.info("Save the plan", f"Wrote {path}"))  # fmt: skip

    def export_recipe(self, path: Path) -> Job | None:
        plan = self._editor.plan
        if plan is None:
            return None

        def write() -> str:
            from lwq_app.core.jobs.atomic import atomic_write_text

            recipe = make_recipe(plan)
            atomic_write_text(path, recipe.tensor_types)
            return recipe.base_ftype

        def done(base: str) -> None:
            self._ctx.notifier.info(
                "Export the recipe",
                f"Wrote {path}: llama-quantize --pure --tensor-type-file {path} MODEL OUT {base}",
            )

        return self._file_job(f"Export {path.name}", write, done=done)

    def _ask_path(self, title: str, filt: str, save: bool) -> Path | None:
        folder = str(self._ctx.session.folder or Path.home())
        get = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        path, _ = get(self._page, title, folder, filt)
        return Path(path) if path else None

    def load_dialog(self) -> None:
        if p := self._ask_path("Load a plan", PLAN_FILTER, False):
            self.load_plan(p)

    def save_dialog(self) -> None:
        if p := self._ask_path("Save the plan", PLAN_FILTER, True):
            self.save_plan(p)

    def export_dialog(self) -> None:
        if p := self._ask_path("Export the recipe", RECIPE_FILTER, True):
            self.export_recipe(p)

    def gguf_dialog(self) -> None:
        if p := self._ask_path("Read a quantized GGUF's types", "GGUF (*.gguf)", False):
            self.read_gguf(p)

    def import_dialog(self) -> None:
        p = self._ask_path("Import a --tensor-type-file", RECIPE_FILTER, False)
        if p is None:
            return
        from lwq_app.core.plan import QUANT_PRESETS

        base, ok = QInputDialog.getItem(
            self._page, "Base type", "The ftype the recipe was used with (llama-quantize's "
            "last argument): tensors it does not name get that mix's types",
            list(QUANT_PRESETS), list(QUANT_PRESETS).index("Q4_K_M"), False,
        )  # fmt: skip
        if ok:
            self.import_recipe(p, base)

    def save_as_dialog(self) -> None:
        name, ok = QInputDialog.getText(self._page, "Save the plan as", "Name")
        if ok and name.strip():
            self._editor.save_as(name.strip())
