"""Small core pieces of the plan editor that landed first: per-tensor heatmap values for an
overlay, and the quantize job refusing a folder as its output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fixtures
from lwq_app.core.importance import heatmap, tensor_values
from lwq_app.core.jobs import OutputError
from lwq_app.core.modelfile import open_model
from lwq_app.core.plan import QuantizeRequest, plan_from_preset, quantize


def test_tensor_values_gives_every_present_cell_and_the_strip() -> None:
    values = {"blk.0.attn_q.weight": 1.5, "blk.1.ffn_down.weight": 2.0, "output.weight": 3.0,
              "blk.1.attn_q.weight": float("nan")}  # fmt: skip
    hm = heatmap(values, "x")
    got = tensor_values(hm)
    assert got == {"blk.0.attn_q.weight": 1.5, "blk.1.ffn_down.weight": 2.0, "output.weight": 3.0}
    assert np.isnan(hm.values).sum() >= 1  # the NaN cell is missing, not a value


def test_quantize_refuses_a_folder_as_output(tmp_path: Path) -> None:
    model = open_model(fixtures.fixture_path("smollm2"))
    plan = plan_from_preset(model, "Q8_0")
    with pytest.raises(OutputError, match="is a folder"):
        quantize(QuantizeRequest(model.path, plan, tmp_path))
    assert list(tmp_path.iterdir()) == []
