from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from lwq_app.core.jobs.errors import Cancelled, InputError
from lwq_app.core.jobs.progress import CancelToken
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.modelfile.upcast import UpcastRequest, upcast


def test_upcast_keeps_metadata_and_values(smollm2_q4_1: Path, smollm2_f16: Path) -> None:
    src, dst = GGUFReader(smollm2_q4_1), GGUFReader(smollm2_f16)
    skip = {"general.file_type"}
    for key, f in src.fields.items():
        if key.startswith("GGUF.") or key in skip:
            continue
        assert dst.get_field(key) is not None, key
        if not key.startswith("tokenizer.ggml.merges"):
            assert dst.get_field(key).contents() == f.contents(), key
    assert dst.get_field("general.file_type").contents() == 1
    s = {t.name: t for t in src.tensors}
    for t in dst.tensors[:12]:
        want = dequantize(s[t.name].data, s[t.name].tensor_type).astype(np.float16)
        np.testing.assert_array_equal(np.asarray(t.data), want.reshape(np.asarray(t.data).shape))
    m = open_model(smollm2_f16)
    assert {t.type for t in m.tensors} == {"F16", "F32"}


def test_offgrid_noise_is_within_half_a_step(smollm2_q4_1: Path, smollm2: Path) -> None:
    """The off-grid fixture moves every weight by at most half its block's grid step."""
    src, dst = GGUFReader(smollm2_q4_1), GGUFReader(smollm2)
    s = {t.name: t for t in src.tensors}
    t = next(t for t in dst.tensors if t.name == "blk.4.attn_v.weight")
    q = s[t.name]
    on_grid = dequantize(q.data, q.tensor_type).reshape(-1, 32)
    d = np.asarray(q.data).reshape(-1, 20)[:, :2].copy().view(np.float16).astype(np.float32)
    delta = np.asarray(t.data, np.float32).reshape(-1, 32) - on_grid
    assert np.all(np.abs(delta) <= 0.5 * np.abs(d) + 1e-3)
    assert np.mean(np.abs(delta) > 0.1 * np.abs(d)) > 0.7  # most weights really moved


def test_upcast_refuses_to_overwrite_and_cancels(smollm2_q4_1: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="overwrite the input"):
        upcast(UpcastRequest(smollm2_q4_1, smollm2_q4_1))
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        upcast(UpcastRequest(smollm2_q4_1, tmp_path / "x.gguf"), cancel=tok)
    assert list(tmp_path.iterdir()) == []
