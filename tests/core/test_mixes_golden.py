"""Every stock mix, with and without an imatrix, on every fixture, equals llama.cpp's choice.

Golden types come from ``llama-quantize --dry-run`` (tests/golden/types, see make_golden.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.plan.stock_mixes import QUANT_PRESETS

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "types"
CASES = [(f, p, im) for f in fixtures.FIXTURES for p in QUANT_PRESETS for im in (False, True)]


@pytest.fixture(scope="module")
def models() -> dict:
    return {}


@pytest.mark.parametrize(("fixture", "preset", "with_imatrix"), CASES)
def test_preset_types_equal_llama_quantize(
    fixture: str, preset: str, with_imatrix: bool, models: dict
) -> None:
    if fixture not in models:
        models[fixture] = (
            open_model(fixtures.fixture_path(fixture)),
            json.loads((GOLDEN / f"{fixture}.json").read_text()),
        )
    model, golden = models[fixture]
    want = dict(
        zip(
            golden["tensors"],
            golden["types"][preset + ("+imatrix" if with_imatrix else "")],
            strict=True,
        )
    )
    plan = plan_from_preset(model, preset, with_imatrix=with_imatrix)
    got = plan.effective_types()
    diff = {n: (got[n], want[n]) for n in want if got[n] != want[n]}
    assert not diff, f"{len(diff)} tensors differ (lwq, llama.cpp): {dict(list(diff.items())[:6])}"
    assert len(got) == len(want)


def test_golden_covers_every_preset() -> None:
    g = json.loads((GOLDEN / "smollm2.json").read_text())
    assert len(g["types"]) == 2 * len(QUANT_PRESETS)


def test_smollm2_q4_k_m_shape_fallbacks_are_visible() -> None:
    """576 is not a multiple of 256: most Q4_K requests become Q5_0, and the plan says so."""
    model = open_model(fixtures.fixture_path("smollm2"))
    plan = plan_from_preset(model, "Q4_K_M")
    q = plan["blk.5.attn_q.weight"]
    assert (q.requested, q.effective, q.fallback) == ("Q4_K", "Q5_0", True)
    down = plan["blk.5.ffn_down.weight"]  # ne0 = 1536 fits 256-blocks
    assert down.fallback is False and down.effective in ("Q4_K", "Q6_K")
    assert any(w.tensor == "blk.5.attn_q.weight" and "Q5_0" in w.message for w in plan.warnings())
