from __future__ import annotations

import pytest

from lwq_app.core.engine import ggml_type_traits
from lwq_app.core.modelfile.type_catalog import (
    TYPES,
    effective_type,
    get_type,
    tensor_bytes,
    valid_types,
)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_catalog_matches_libggml(name: str) -> None:
    t = TYPES[name]
    block, size, ggml_name = ggml_type_traits(t.ggml_id)
    assert (block, size) == (t.block_size, t.type_size), name
    assert ggml_name.upper() == name


def test_bpw_of_common_types() -> None:
    assert TYPES["Q4_K"].bpw == 4.5
    assert TYPES["Q6_K"].bpw == 6.5625
    assert TYPES["Q8_0"].bpw == 8.5
    assert TYPES["IQ4_XS"].bpw == 4.25
    assert TYPES["Q2_K"].bpw == 2.625


@pytest.mark.parametrize(
    ("requested", "ne0", "effective"),
    [
        ("Q4_K", 576, "Q5_0"),  # SmolLM2's n_embd: 576 % 256 != 0
        ("Q5_K", 576, "Q5_1"),
        ("Q6_K", 576, "Q8_0"),
        ("Q2_K", 576, "Q4_0"),
        ("Q3_K", 576, "Q4_0"),
        ("IQ4_XS", 576, "IQ4_NL"),
        ("IQ2_XXS", 576, "IQ4_NL"),
        ("Q4_K", 1536, "Q4_K"),  # ffn_down rows fit 256-blocks
        ("Q4_K", 48, "F16"),  # not even a multiple of 32
        ("Q8_0", 48, "F16"),
        ("F16", 48, "F16"),
    ],
)
def test_fallback_chain(requested: str, ne0: int, effective: str) -> None:
    assert effective_type(requested, ne0) == effective


def test_sizes_and_lookup() -> None:
    assert tensor_bytes("Q8_0", (576, 192)) == 192 * 18 * 34
    assert tensor_bytes("F16", (576,)) == 1152
    assert get_type("q4_k").name == "Q4_K"
    with pytest.raises(KeyError, match="Q9_K"):
        get_type("Q9_K")
    assert "Q4_K" not in valid_types(576) and "Q5_0" in valid_types(576)
