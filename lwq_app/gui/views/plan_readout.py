"""The plan editor's live readouts: what the current plan (or the drag in progress) costs.

Every figure is the core's ``PlanReadout`` (``ReadoutContext.readout``): the predicted file
size on disk and the tensor data in it, bits per weight, the fit on the project's target
(weights + KV cache + compute buffers), the difference from the nearest stock mix and the
predicted KLD — or the raw proxy, labelled as such, with a Calibrate button. This widget only
formats them.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QWidget

from lwq_app.core.jobs import format_size
from lwq_app.core.optimize import PlanReadout

_FIELDS = ("size", "bpw", "fit", "nearest", "kld")
_TITLES = {
    "size": "Size on disk",
    "bpw": "Bits per weight",
    "fit": "Target",
    "nearest": "Nearest stock mix",
    "kld": "Predicted KLD",
}
_TIPS = {
    "size": "The GGUF file this plan makes: tensor data plus metadata and alignment padding",
    "bpw": "Tensor-data bits per weight over all weights, as llama-quantize reports it",
    "fit": "Weights + KV cache + compute buffers on the project's target (the Target step)",
    "nearest": "The stock llama.cpp mix closest in file size, and how much larger this plan is",
    "kld": "Mean KL divergence vs F16 predicted from the calibrated sensitivity proxy",
}


def _signed_size(n: int) -> str:
    return ("+" if n > 0 else "−" if n < 0 else "±") + format_size(abs(n))


class PlanReadoutBar(QWidget):
    """Five figures in a row; ``show_readout`` replaces them."""

    calibrate_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 2, 4, 2)
        grid.setHorizontalSpacing(18)
        self.titles: dict[str, QLabel] = {}
        self.values: dict[str, QLabel] = {}
        for j, key in enumerate(_FIELDS):
            title, value = QLabel(_TITLES[key]), QLabel("—")
            title.setObjectName(f"readout_title_{key}")
            value.setObjectName(f"readout_{key}")
            title.setStyleSheet("color: palette(dark); font-size: 11px;")  # mid was too faint
            value.setStyleSheet("font-weight: 600; font-size: 13px;")
            for w in (title, value):
                w.setToolTip(_TIPS[key])
            grid.addWidget(title, 0, j)
            grid.addWidget(value, 1, j)
            self.titles[key], self.values[key] = title, value
        self.calibrate = QPushButton("Calibrate…")
        self.calibrate.setToolTip(
            "Measure how the proxy maps to real KLD on this model (a job: a few minutes on "
            "SmolLM2, longer on large models); the prediction is then in units of KLD"
        )
        self.calibrate.clicked.connect(self.calibrate_requested)
        self.calibrate.hide()
        grid.addWidget(self.calibrate, 0, len(_FIELDS), 2, 1)
        grid.setColumnStretch(len(_FIELDS) + 1, 1)
        self.readout: PlanReadout | None = None

    def show_readout(self, r: PlanReadout | None, *, can_calibrate: bool = False) -> None:
        self.readout = r
        if r is None:
            for v in self.values.values():
                v.setText("—")
            self.calibrate.hide()
            return
        fs = r.file_size
        self.values["size"].setText(f"{format_size(fs.total)}")
        self.values["size"].setToolTip(
            f"{_TIPS['size']}\nfile {fs.total:,} B = tensor data {fs.tensor_data:,} B + "
            f"metadata {fs.metadata:,} B + padding {fs.padding:,} B"
        )
        self.values["bpw"].setText(f"{r.bpw:.3f}")
        if r.fit is None:
            self.values["fit"].setText("no target")
        else:
            f = r.fit
            where = f"GPU {format_size(f.device_total)}" if f.device_total else ""
            host = f"RAM {format_size(f.host_total)}" if f.host_total else ""
            mark = "fits" if f.fits else "does not fit"
            self.values["fit"].setText(f"{mark} · {' + '.join(x for x in (where, host) if x)}")
            self.values["fit"].setStyleSheet(
                "font-weight: 600; font-size: 13px; color: %s;"
                % ("palette(text)" if f.fits else "#d03030")
            )
        self.values["nearest"].setText(f"{r.nearest_preset} {_signed_size(r.nearest_delta_bytes)}")
        if r.kld is None:
            self.titles["kld"].setText(_TITLES["kld"])
            self.values["kld"].setText("waiting for the sensitivity")  # the predictor comes with it
            self.calibrate.hide()
        else:
            k = r.kld
            self.titles["kld"].setText(k.label[:1].upper() + k.label[1:])
            self.values["kld"].setText(f"{k.value:.4g}")
            self.calibrate.setVisible(not k.calibrated and can_calibrate)

    def texts(self) -> dict[str, str]:
        """What each field shows now (for tests and the tour)."""
        return {k: v.text() for k, v in self.values.items()}
