"""MUL_MAT_ID collection on a tiny MoE model that llama.cpp can tokenize for.

The synthetic ``moe8`` fixture has no tokenizer, so this uses ``fixtures.make_tokenized``: a
small MoE (4 experts, 2 used) carrying SmolLM2's tokenizer. The router ``ffn_gate_inp`` is a plain MUL_MAT on the
same input as ``ffn_up_exps``: summed over experts, the expert data must equal n_used × the
router's (an independent check of the per-expert path). Where llama.cpp's tools are built
(``LWQ_LLAMA_TOOLS``, opt-in: the native tools are not built in CI) the file is compared with llama-imatrix.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fixtures import make_tokenized
from lwq_app.core.importance.collection import ImatrixRequest, collect_imatrix
from lwq_app.core.modelfile.imatrix_file import read_imatrix

ROOT = Path(__file__).resolve().parents[2]
N_EXPERT, N_USED, N_EMBD, N_FF, N_LAYER = 4, 2, 64, 128, 2


@pytest.fixture(scope="module")
def moe_model(smollm2_f16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moe") / "moe.gguf"
    return make_tokenized(
        "moe", out, n_layer=N_LAYER, n_embd=N_EMBD, n_ff=N_FF, n_expert=N_EXPERT, n_used=N_USED
    )


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
