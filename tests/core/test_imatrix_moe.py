"""MUL_MAT_ID collection on a tiny MoE model that llama.cpp can tokenize for.

The synthetic ``moe8`` fixture has no tokenizer, so this builds its own small MoE (4 experts,
2 used) carrying SmolLM2's tokenizer. The router ``ffn_gate_inp`` is a plain MUL_MAT on the
same input as ``ffn_up_exps``: summed over experts, the expert data must equal n_used × the
router's (an independent check of the per-expert path). Where llama.cpp's tools are built
(``LWQ_LLAMA_TOOLS``, opt-in: the native tools are not built in CI) the file is compared with llama-imatrix.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from lwq_app.core.importance.collection import ImatrixRequest, collect_imatrix
from lwq_app.core.modelfile.imatrix_file import read_imatrix
from lwq_app.core.modelfile.inventory import _open_reader

ROOT = Path(__file__).resolve().parents[2]
N_EXPERT, N_USED, N_EMBD, N_FF, N_LAYER = 4, 2, 64, 128, 2


def _make_moe(smollm2_f16: Path, out: Path) -> Path:
    from gguf import GGUFValueType, GGUFWriter

    src = _open_reader(smollm2_f16)
    rng = np.random.default_rng(zlib.crc32(b"lwq-moe-tok"))
    n_vocab = len(src.get_field("tokenizer.ggml.tokens").data)

    def mat(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float16)

    w = GGUFWriter(out, arch="llama")
    w.add_name("lwq-test-moe")
    w.add_context_length(1024)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(N_EMBD // 4)
    w.add_vocab_size(n_vocab)
    w.add_expert_count(N_EXPERT)
    w.add_expert_used_count(N_USED)
    w.add_file_type(1)
    for key, field in src.fields.items():
        if key.startswith("tokenizer."):
            vtype = GGUFValueType(field.types[0])
            sub = GGUFValueType(field.types[-1]) if vtype == GGUFValueType.ARRAY else None
            w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    w.add_tensor("token_embd.weight", mat(n_vocab, N_EMBD))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    w.add_tensor("output.weight", mat(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "attn_q.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_k.weight", mat(N_EMBD // 2, N_EMBD))
        w.add_tensor(p + "attn_v.weight", mat(N_EMBD // 2, N_EMBD))
        w.add_tensor(p + "attn_output.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(p + "ffn_gate_inp.weight", mat(N_EXPERT, N_EMBD).astype(np.float32))
        w.add_tensor(p + "ffn_gate_exps.weight", mat(N_EXPERT, N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up_exps.weight", mat(N_EXPERT, N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down_exps.weight", mat(N_EXPERT, N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def moe_model(smollm2_f16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_moe(smollm2_f16, tmp_path_factory.mktemp("moe") / "moe.gguf")


@pytest.mark.slow
def test_experts_collected(moe_model: Path, tmp_path: Path) -> None:
    text_file = ROOT / "resources/calibration/lwq-calibration-v1.txt"
    out = tmp_path / "moe.imatrix.gguf"
    kw = {"ctx": 64, "chunks": 4, "batch": 128, "threads": 2}  # two sequences per decode
    r = collect_imatrix(ImatrixRequest(moe_model, text_file, out, process_output=True, **kw))
    im = read_imatrix(out)
    n_tokens = 4 * 64
    assert im.chunk_count == 4 and im.chunk_size == 64
    assert "output.weight" in im.entries  # --process-output
    for i in range(N_LAYER):
        router = im.entries[f"blk.{i}.ffn_gate_inp.weight"]
        assert router.counts.tolist() == [n_tokens]
        for kind in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            e = im.entries[f"blk.{i}.{kind}.weight"]
            assert e.n_mat == N_EXPERT and e.counts.sum() == N_USED * n_tokens
        up = im.entries[f"blk.{i}.ffn_up_exps.weight"]
        np.testing.assert_allclose(up.sums.sum(0), N_USED * router.sums[0], rtol=1e-4)
        gate = im.entries[f"blk.{i}.ffn_gate_exps.weight"]
        np.testing.assert_allclose(gate.sums, up.sums, rtol=1e-6)
    zero = r.coverage.zero_count_experts
    assert zero == {n: tuple(v) for n, v in im.zero_count_experts().items()}

    tools = Path(os.environ.get("LWQ_LLAMA_TOOLS", "/nonexistent"))  # opt-in, not in CI
    if not (tools / "llama-imatrix").exists():
        pytest.skip("llama-imatrix not built here: compared with the router invariant only")
    native = tmp_path / "native.gguf"
    subprocess.run(
        [str(tools / "llama-imatrix"), "-m", str(moe_model), "-f", str(text_file),
         "-o", str(native), "-c", "64", "--chunks", "4", "-b", "128", "-t", "2",
         "--no-ppl", "--process-output"],
        check=True, capture_output=True,
    )  # fmt: skip
    ref = read_imatrix(native)
    assert set(ref.entries) == set(im.entries)
    for name, e in ref.entries.items():
        np.testing.assert_array_equal(im.entries[name].counts, e.counts, err_msg=name)
        rel = np.max(np.abs(im.entries[name].sums - e.sums)) / np.max(np.abs(e.sums))
        assert rel < 1e-3, name
