"""The model summary the app's model page shows, checked against gguf-py's own reading of
the same files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.modelfile import ModelSummary, open_model, summarize
from lwq_app.core.modelfile.summary import FTYPE_NAMES
from lwq_app.core.plan.stock_mixes import PRESETS


def _gguf_types(path: Path) -> Counter[str]:
    from gguf import GGUFReader

    return Counter(t.tensor_type.name for t in GGUFReader(path, "r").tensors)


@pytest.mark.slow  # gguf-py reads the whole vocabulary: ~4 s
def test_quantized_source(smollm2_q4_1: Path) -> None:
    s = summarize(open_model(smollm2_q4_1))
    assert isinstance(s, ModelSummary)
    assert (s.architecture, s.n_layer, s.n_head, s.n_head_kv, s.n_gqa) == ("llama", 30, 9, 3, 3)
    assert (s.n_expert, s.n_expert_used, s.n_vocab) == (0, 0, 49152)
    assert s.context_length == 8192 and s.tied_embeddings
    assert s.file_size == smollm2_q4_1.stat().st_size and s.n_files == 1
    assert s.n_params == 134_515_008
    assert not s.is_float and s.file_type_name == "Q4_1"
    assert s.explanation == (
        "This file is quantized (Q4_1). Re-quantizing it would compound the error, so lwq "
        "works from an F16 upcast of it, made once and kept in the project."
    )
    assert {r.type: r.n_tensors for r in s.type_mix} == dict(_gguf_types(smollm2_q4_1))
    assert [r.bytes for r in s.type_mix] == sorted((r.bytes for r in s.type_mix), reverse=True)
    assert sum(r.bytes for r in s.type_mix) == open_model(smollm2_q4_1).tensor_data_bytes
    assert sum(r.share for r in s.type_mix) == pytest.approx(1.0)


def test_float_model(smollm2_f16: Path) -> None:
    s = summarize(open_model(smollm2_f16))
    assert s.is_float and s.file_type_name == "F16" and s.explanation == ""
    assert s.type_mix[0].type == "F16" and {r.type for r in s.type_mix} == {"F16", "F32"}
    assert s.type_mix[0].share > 0.99


def test_moe_and_split(tmp_path: Path) -> None:
    moe = summarize(open_model(fixtures.synthetic("moe8")))
    assert (moe.n_expert, moe.n_expert_used, moe.context_length) == (8, 2, 2048)
    first = fixtures.make_synthetic("gqa4-untied", tmp_path / "split.gguf", split_max_tensors=20)
    shards = sorted(tmp_path.glob("split-*-of-*.gguf"))
    s = summarize(open_model(first))
    assert s.n_files == len(shards) > 1
    assert s.file_size == sum(p.stat().st_size for p in shards)
    assert not s.tied_embeddings and s.n_gqa == 4


def test_file_type_names_agree_with_the_stock_mixes() -> None:
    for p in PRESETS.values():
        assert FTYPE_NAMES[p.ftype] == p.name
