"""What the importance view draws and exports: ``heatmap_for`` over imatrix statistics and
sensitivities, the per-layer bar and the CSV, checked against the statistics themselves."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

import fixtures
from lwq_app.core.importance import (
    STAT_FIELDS,
    Sensitivity,
    TensorSensitivity,
    compute_stats,
    heatmap_csv,
    heatmap_for,
    layer_profile,
)
from lwq_app.core.modelfile.imatrix_file import read_imatrix
from lwq_app.core.modelfile.inventory import ModelInfo, open_model


@pytest.fixture(scope="module")
def smol(smollm2_f16: Path) -> ModelInfo:
    return open_model(smollm2_f16)


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_statistics_heatmap_and_its_layer_bar(smol: ModelInfo, golden_imatrix: Path) -> None:
    st = compute_stats(read_imatrix(golden_imatrix))
    by = st.by_name()
    for stat in STAT_FIELDS:
        hm = heatmap_for(st, stat, smol)
        assert hm.layers == tuple(range(30)) and hm.label == stat
        assert hm.cell(7, "ffn_down") == float(getattr(by["blk.7.ffn_down.weight"], stat))
    hm = heatmap_for(st, "sum_act2", smol)
    assert hm.kinds == (
        "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
    )  # fmt: skip
    assert hm.tensor_name(7, "ffn_down") == "blk.7.ffn_down.weight"
    # SmolLM2 ties its output to token_embd, which no imatrix covers: missing, not zero
    assert hm.extra_names == ("token_embd.weight",) and hm.extra == {}
    for i, layer in enumerate(hm.layers):
        mine = [t.sum_act2 for t in st.tensors if t.layer == layer]
        assert hm.layer_values[i] == pytest.approx(sum(mine) / len(mine), rel=1e-12)
    np.testing.assert_array_equal(layer_profile(hm), hm.layer_values)


def test_missing_cells_and_layers(smol: ModelInfo, golden_imatrix: Path) -> None:
    im = read_imatrix(golden_imatrix)
    for name in [n for n in im.entries if n.startswith("blk.3.")] + ["blk.5.attn_v.weight"]:
        del im.entries[name]
    hm = heatmap_for(compute_stats(im), "mean", smol)
    assert hm.layers == tuple(range(30))  # the model's grid, not the imatrix's
    assert not hm.present[3].any() and math.isnan(hm.layer_values[3])
    assert hm.cell(5, "attn_v") is None and hm.present[5].sum() == len(hm.kinds) - 1
    rows = _rows(heatmap_csv(hm))
    assert rows[0] == ["layer", *hm.kinds]
    assert len(rows) == 1 + 30 + 1 and all(len(r) == len(hm.kinds) + 1 for r in rows)
    assert rows[1 + 3] == ["3", *[""] * len(hm.kinds)]
    j = hm.kinds.index("attn_v")
    assert rows[1 + 5][1 + j] == ""
    assert rows[1 + 7][1 + hm.kinds.index("ffn_down")] == repr(hm.cell(7, "ffn_down"))
    for r in rows[1:31]:  # every value read back exactly
        i = int(r[0])
        for k, cell in enumerate(r[1:]):
            if cell:
                assert float(cell) == hm.values[i, k]
    assert rows[-1] == ["token_embd.weight", *[""] * len(hm.kinds)]


def _sensitivity(model: ModelInfo) -> Sensitivity:
    """A sensitivity with a known value per tensor (every quantizable one; Q4_K and Q8_0)."""
    tensors = {}
    for k, t in enumerate(x for x in model.tensors if x.quantizable):
        err = {"Q4_K": float(k + 1), "Q8_0": (k + 1) / 64}
        tensors[t.name] = TensorSensitivity(t.name, t.shape, True, 8, MappingProxyType(err), 4.0)
    return Sensitivity("m" * 64, "i" * 64, 8, MappingProxyType(tensors))


def test_sensitivity_heatmap_has_the_outside_tensors() -> None:
    model = open_model(fixtures.synthetic("gqa4-untied"))
    sens = _sensitivity(model)
    hm = heatmap_for(sens, "sensitivity:Q4_K", model)
    assert hm.extra_names == ("token_embd.weight", "output.weight")
    assert hm.extra == {
        "token_embd.weight": sens.tensors["token_embd.weight"].error["Q4_K"],
        "output.weight": sens.tensors["output.weight"].error["Q4_K"],
    }
    for i, layer in enumerate(hm.layers):  # absolute errors add up over a layer
        mine = [t.error["Q4_K"] for n, t in sens.tensors.items() if n.startswith(f"blk.{layer}.")]
        assert hm.layer_values[i] == sum(mine)
    rel = heatmap_for(sens, "sensitivity:Q8_0:relative", model)
    assert rel.cell(2, "attn_q") == sens.tensors["blk.2.attn_q.weight"].error["Q8_0"] / 4.0
    assert rel.layer_values[2] == pytest.approx(np.nanmean(rel.values[2]))
    rows = _rows(heatmap_csv(hm))
    assert rows[-2][:2] == ["token_embd.weight", repr(hm.extra["token_embd.weight"])]
    assert rows[-1][:2] == ["output.weight", repr(hm.extra["output.weight"])]


def test_bad_statistic_names(smol: ModelInfo, golden_imatrix: Path) -> None:
    st = compute_stats(read_imatrix(golden_imatrix))
    sens = _sensitivity(smol)
    with pytest.raises(KeyError, match="nope"):
        heatmap_for(st, "nope", smol)
    with pytest.raises(KeyError, match="no sensitivity measured for 'IQ1_S'"):
        heatmap_for(sens, "sensitivity:IQ1_S", smol)
    with pytest.raises(TypeError, match="needs a Sensitivity"):
        heatmap_for(st, "sensitivity:Q4_K", smol)
    with pytest.raises(TypeError, match="needs ImatrixStats"):
        heatmap_for(sens, "mean", smol)
