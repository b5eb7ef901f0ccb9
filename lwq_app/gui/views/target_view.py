"""The Target step: the machine the model must fit, and what fits on it.

The devices llama.cpp sees come from the core's ``list_devices`` job (on first show); a
target is this machine or a named ``HardwareProfile``, with its budget, context length and
GPU layers editable. Every change is saved in the project (``session.update(target=…)``) and
sent, debounced, to the core's ``target_fit`` job, whose rows ``FitChart`` draws as they are.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lwq_app.core.evaluate import Device, DevicesRequest, DeviceType, list_devices
from lwq_app.core.evaluate.targets import (
    ALL_LAYERS,
    HardwareProfile,
    TargetFit,
    TargetFitRequest,
    TargetSpec,
    builtin_profiles,
    load_profiles,
    target_fit,
    this_machine,
)
from lwq_app.core.jobs import LwqError, format_size

from ..context import AppContext
from ..worker import Job
from .fit_chart import GIB, FitChart
from .profile_editor import THIS_MACHINE, ProfileEditorDialog, save_as_profile, user_profiles

#: milliseconds between the last change and the fit job
DEBOUNCE_MS = 300
_BUDGET_LABEL = {"cpu": "RAM", "unified": "Unified memory", "discrete": "GPU memory"}
_KIND_TEXT = {
    "cpu": "everything in RAM",
    "unified": "unified memory, shared by GPU and CPU",
    "discrete": "a GPU with its own memory, beside the RAM",
}


def _gib(spin: QDoubleSpinBox) -> int:
    return round(spin.value() * GIB)


class TargetView(QWidget):
    """Pick the hardware, see F16 and every stock mix against its memory."""

    done_changed = Signal(bool)
    fit_shown = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._devices: tuple[Device, ...] | None = None
        self._devices_job: Job | None = None
        self._fit_job: Job | None = None
        self._restoring = False
        self.last_fit: TargetFit | None = None
        self._shown_spec: TargetSpec | None = None

        self.devices_label = QLabel("Looking for devices…")
        self.devices_label.setWordWrap(True)
        self.devices_label.setToolTip("The compute devices this llama.cpp build sees")
        devices_box = QGroupBox("This machine")
        QVBoxLayout(devices_box).addWidget(self.devices_label)

        self.profile_combo = QComboBox()
        self.profile_combo.setToolTip(
            "This machine, or a hardware profile for a machine you do not have"
        )
        self.profile_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.profile_combo.currentIndexChanged.connect(self._on_profile)
        self.profile_note = QLabel()
        self.profile_note.setWordWrap(True)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(0.25, 4096)
        self.budget_spin.setDecimals(2)
        self.budget_spin.setSuffix(" GiB")
        self.budget_spin.setToolTip("The memory the model may use on the target")
        self.budget_label = QLabel("Memory budget")
        self.ram_spin = QDoubleSpinBox()
        self.ram_spin.setRange(0.25, 4096)
        self.ram_spin.setDecimals(2)
        self.ram_spin.setSuffix(" GiB")
        self.ram_spin.setToolTip("The RAM beside the GPU: the layers not offloaded live here")
        self.context_spin = QSpinBox()
        self.context_spin.setRange(16, 1 << 20)
        self.context_spin.setSingleStep(512)
        self.context_spin.setValue(4096)
        self.context_spin.setToolTip("Context length in tokens: it sizes the KV cache")
        self.layers_spin = QSpinBox()
        self.layers_spin.setRange(0, 1)
        self.layers_spin.setToolTip(
            "Layers offloaded to the GPU (llama.cpp's -ngl): the output layer first, then the "
            "last blocks; the maximum puts every layer on the GPU"
        )
        for w in (self.budget_spin, self.ram_spin, self.context_spin, self.layers_spin):
            w.valueChanged.connect(self._changed)
        self.save_button = QPushButton("Save as profile…")
        self.save_button.setToolTip("Keep these memories as a named profile (in the data folder)")
        self.save_button.clicked.connect(self.save_as_profile)
        self.edit_button = QPushButton("Edit profiles…")
        self.edit_button.setToolTip("Add, change or remove your hardware profiles")
        self.edit_button.clicked.connect(self.edit_profiles)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.edit_button)

        form = QFormLayout()
        form.addRow("Target:", self.profile_combo)
        form.addRow("", self.profile_note)
        form.addRow(self.budget_label, self.budget_spin)
        form.addRow("RAM:", self.ram_spin)
        form.addRow("Context length:", self.context_spin)
        self.layers_label = QLabel("GPU layers:")
        form.addRow(self.layers_label, self.layers_spin)
        form.addRow(buttons)
        self._form = form
        target_box = QGroupBox("Target")
        target_box.setLayout(form)

        left = QVBoxLayout()
        left.addWidget(devices_box)
        left.addWidget(target_box)
        left.addStretch(1)

        self.fit_label = QLabel("Open a model to see which mixes fit.")
        self.fit_label.setStyleSheet("font-weight: bold; font-size: 11pt;")
        self.note_label = QLabel()
        self.note_label.setWordWrap(True)
        self.chart = FitChart(self)
        self.chart.setToolTip("Weights, KV cache and compute buffers of each mix; ✗: does not fit")
        right = QVBoxLayout()
        right.addWidget(self.fit_label)
        right.addWidget(self.note_label)
        scroll = QScrollArea()
        scroll.setWidget(self.chart)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        right.addWidget(scroll, 1)

        layout = QHBoxLayout(self)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setMaximumWidth(380)
        layout.addWidget(left_w)
        layout.addLayout(right, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._start_fit)
        ctx.session.opened.connect(self._on_opened)
        ctx.session.closed.connect(self._on_closed)

    # -- for the window and the tests ---------------------------------------------------
    def is_done(self) -> bool:
        state = self._ctx.session.state
        return state is not None and state.target is not None

    def select_profile(self, name: str) -> None:
        i = self.profile_combo.findText(name)
        if i < 0:
            raise KeyError(f"no hardware profile named {name!r}")
        self.profile_combo.setCurrentIndex(i)

    def set_context(self, n: int) -> None:
        self.context_spin.setValue(n)

    def set_gpu_layers(self, n: int) -> None:
        self.layers_spin.setValue(n)

    def bar_values(self) -> dict[str, tuple[int, ...]]:
        """Mix label → the segment values drawn, in bytes (GPU then RAM with two charts)."""
        return dict(self.chart.values)

    def target(self) -> TargetSpec | None:
        """The target the controls show (None until the profiles are known)."""
        p = self.profile_combo.currentData()
        if not isinstance(p, HardwareProfile):
            return None
        kind = TargetSpec.from_profile(p).memory_kind
        device, host = p.device_memory, p.host_memory
        if kind == "cpu":
            host = _gib(self.budget_spin)
        else:
            device = _gib(self.budget_spin)
            host = _gib(self.ram_spin) if kind == "discrete" else host
        layers = self.layers_spin.value()
        gpu_layers = ALL_LAYERS if layers == self.layers_spin.maximum() else layers
        if kind == "cpu":
            gpu_layers = 0
        return TargetSpec(
            p.name, p.backend, device, host, p.unified, self.context_spin.value(), gpu_layers
        )

    # -- devices and profiles -----------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._devices is None and self._devices_job is None:
            self._devices_job = self._ctx.runner.submit(
                "List devices", list_devices, DevicesRequest(),
                on_result=self._on_devices, on_error=lambda _e: self._on_devices(()),
            )  # fmt: skip

    def _on_devices(self, devices: tuple[Device, ...]) -> None:
        self._devices = tuple(devices)
        lines = []
        for d in self._devices:
            mem = f"{format_size(d.memory_total, binary=True)}, "
            mem += f"{format_size(d.memory_free, binary=True)} free"
            if d.type is DeviceType.CPU:
                lines.append(f"<b>{d.name}</b> ({d.description}): {d.threads} threads, "
                             f"RAM {mem}")  # fmt: skip
            else:
                lines.append(f"<b>{d.name}</b> ({d.description}, {d.backend}): {mem}")
        self.devices_label.setText("<br>".join(lines) or "llama.cpp lists no devices")
        self._load_profiles(select=THIS_MACHINE)
        self._restore()

    def _load_profiles(self, select: str | None = None) -> None:
        try:
            profiles = load_profiles()
        except LwqError as e:
            self._ctx.notifier.report(e, "Read the hardware profiles")
            profiles = builtin_profiles()
        keep = select or self.profile_combo.currentText()
        self._restoring = True
        self.profile_combo.clear()
        if self._devices:
            self.profile_combo.addItem(THIS_MACHINE, this_machine(self._devices))
        for p in profiles:
            self.profile_combo.addItem(p.name, p)
            self.profile_combo.setItemData(
                self.profile_combo.count() - 1, p.description, Qt.ItemDataRole.ToolTipRole
            )
        i = self.profile_combo.findText(keep)
        self.profile_combo.setCurrentIndex(max(i, 0))
        self._restoring = False

    def save_as_profile(self) -> None:
        spec = self.target()
        name = None if spec is None else save_as_profile(self, spec, self._ctx.notifier)
        if name is not None:
            self._load_profiles(select=name)
            self._on_profile()

    def edit_profiles(self) -> None:
        dialog = ProfileEditorDialog(user_profiles(self._ctx.notifier), self._ctx.notifier, self)
        if dialog.exec():
            self._load_profiles()
            self._on_profile()

    # -- the controls -------------------------------------------------------------------
    def _on_profile(self, _index: int = -1) -> None:
        """Put the chosen profile's memories into the controls."""
        if self._restoring:
            return
        p = self.profile_combo.currentData()
        if not isinstance(p, HardwareProfile):
            return
        spec = TargetSpec.from_profile(p, self.context_spin.value())
        self._show_spec(spec, p.description)
        self._changed()

    def _show_spec(self, spec: TargetSpec, description: str = "") -> None:
        kind = spec.memory_kind
        self._restoring = True
        budget = spec.host_memory if kind == "cpu" else spec.device_memory
        self.budget_spin.setValue(budget / GIB)
        self.ram_spin.setValue(spec.host_memory / GIB)
        self.context_spin.setValue(spec.context)
        self.layers_spin.setValue(min(spec.gpu_layers, self.layers_spin.maximum()))
        self._restoring = False
        self.budget_label.setText(f"{_BUDGET_LABEL[kind]}:")
        self._form.setRowVisible(self.ram_spin, kind == "discrete")
        self.layers_spin.setEnabled(kind != "cpu")
        text = f"{spec.backend}: {_KIND_TEXT[kind]}"
        self.profile_note.setText(f"{text}<br><i>{description}</i>" if description else text)

    def _changed(self, *_args: object) -> None:
        if self._restoring or not self._ctx.session.is_open:
            return
        spec = self.target()
        state = self._ctx.session.state
        if spec is None or state is None:
            return
        if state.target != spec:
            self._ctx.session.update(target=spec)
            self.done_changed.emit(True)
        self._debounce.start()

    def _restore(self) -> None:
        """Show the project's saved target (or this machine's) once profiles are known."""
        session = self._ctx.session
        if session.model is None or self._devices is None:
            return
        self.layers_spin.setMaximum(session.model.n_layer + 1)
        self.layers_label.setText(f"GPU layers ({session.model.n_layer + 1} = all):")
        saved = session.state.target if session.state is not None else None
        if saved is None:
            self._on_profile()
            return
        if self.profile_combo.findText(saved.profile) < 0:
            p = HardwareProfile(
                saved.profile,
                saved.backend,
                saved.device_memory,
                saved.host_memory,
                saved.unified,
                "the project's target",
            )
            self.profile_combo.addItem(p.name, p)  # fmt: skip
        self._restoring = True
        self.profile_combo.setCurrentIndex(self.profile_combo.findText(saved.profile))
        self._restoring = False
        self._show_spec(saved, self.profile_combo.currentData().description)
        self._changed()

    def _on_opened(self) -> None:
        self._restore()
        self.done_changed.emit(self.is_done())

    def _on_closed(self) -> None:
        self._debounce.stop()
        if self._fit_job is not None:
            self._ctx.runner.cancel(self._fit_job)
        self.last_fit = None
        self.chart.clear()
        self.fit_label.setText("Open a model to see which mixes fit.")
        self.note_label.clear()
        self.done_changed.emit(False)

    # -- the fit ------------------------------------------------------------------------
    def _start_fit(self) -> None:
        session = self._ctx.session
        spec = self.target()
        if spec is None or session.model is None:
            return
        if self._fit_job is not None and not self._fit_job.done:
            self._ctx.runner.cancel(self._fit_job)
        self.fit_label.setText("Measuring…")
        request = TargetFitRequest(session.model.path, spec, devices=self._devices)
        job = self._ctx.runner.submit(
            "Fit the target", target_fit, request,
            on_result=lambda fit: self._on_fit(job, spec, fit),
            on_error=lambda _e: self.fit_label.setText("No fit: see the message above"),
        )  # fmt: skip
        self._fit_job = job

    def _on_fit(self, job: Job, spec: TargetSpec, fit: TargetFit) -> None:
        if job is not self._fit_job:
            return  # an older fit that ended after a newer one started
        self.last_fit = fit
        self._shown_spec = spec
        self.chart.show_fit(fit, spec.memory_kind)
        how = "Measured on this machine" if fit.measured else f"Estimate for {spec.backend}"
        misses = [r.label for r in fit.rows if not r.fits]
        self.fit_label.setText(f"{how} — {spec.profile}, {spec.context:,} tokens of context")
        cross = f"✗ does not fit: {', '.join(misses)}" if misses else "Every mix fits."
        self.note_label.setText(f"{fit.note[0].upper()}{fit.note[1:]}.<br>{cross}")
        self.fit_shown.emit()

    @property
    def shown_target(self) -> TargetSpec | None:
        """The target the chart was drawn for."""
        return self._shown_spec
