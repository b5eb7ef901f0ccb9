"""Tiny valid seed files for the fuzz suite (written deterministically with gguf-py).

* ``tiny_model``: llama, 2 layers, n_embd 64, 2 experts, 32-token vocabulary (token strings,
  scores, token types), F32 norms, F16 matrices and one Q8_0 tensor — about 70 KB.
* ``tiny_imatrix``: a GGUF imatrix for it (a few tensors, one MoE entry); ``tiny_dat``: the
  same in the legacy format.
* ``tiny_plan``: ``QuantPlan.to_json()`` of the tiny model's Q4_K_M mix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

N_EMBD, N_FF, N_VOCAB, N_LAYER, N_EXPERT = 64, 64, 32, 2, 2


def write_tiny_model(path: Path) -> Path:
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    rng = np.random.default_rng(20261202)

    def mat(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float16)

    w = GGUFWriter(path, arch="llama")
    w.add_name("lwq-fuzz-tiny")
    w.add_context_length(256)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(16)
    w.add_vocab_size(N_VOCAB)
    w.add_expert_count(N_EXPERT)
    w.add_expert_used_count(1)
    w.add_file_type(1)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(N_VOCAB)])
    w.add_token_scores([float(-i) for i in range(N_VOCAB)])
    w.add_token_types([1] * N_VOCAB)
    w.add_tensor("token_embd.weight", mat(N_VOCAB, N_EMBD))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    q = quantize(mat(N_VOCAB, N_EMBD).astype(np.float32), GGMLQuantizationType.Q8_0)
    w.add_tensor("output.weight", q, raw_dtype=GGMLQuantizationType.Q8_0)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "attn_q.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(p + "attn_k.weight", mat(N_EMBD // 2, N_EMBD))
        w.add_tensor(p + "attn_v.weight", mat(N_EMBD // 2, N_EMBD))
        w.add_tensor(p + "attn_output.weight", mat(N_EMBD, N_EMBD))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(p + "ffn_gate_inp.weight", mat(N_EXPERT, N_EMBD).astype(np.float32))
        w.add_tensor(p + "ffn_up_exps.weight", mat(N_EXPERT, N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down_exps.weight", mat(N_EXPERT, N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_imatrix_obj():  # -> Imatrix
    from lwq_app.core.modelfile.imatrix_file import Imatrix, ImatrixEntry

    rng = np.random.default_rng(7)
    entries = {}
    for i in range(N_LAYER):
        for kind, ne0, n_mat in (
            ("attn_q", N_EMBD, 1),
            ("attn_k", N_EMBD, 1),
            ("ffn_up_exps", N_EMBD, 2),
        ):
            name = f"blk.{i}.{kind}.weight"
            sums = rng.uniform(0.1, 5.0, (n_mat, ne0)).astype(np.float32)
            counts = np.full(n_mat, 512.0 * 4, np.float32)
            entries[name] = ImatrixEntry(name, sums, counts)
    return Imatrix(entries, datasets=("fuzz.txt",), chunk_count=4, chunk_size=512)


def write_tiny_imatrix(path: Path) -> Path:
    from lwq_app.core.modelfile.imatrix_file import write_gguf

    write_gguf(tiny_imatrix_obj(), path)
    return path


def write_tiny_dat(path: Path) -> Path:
    from lwq_app.core.modelfile.imatrix_file import write_dat

    write_dat(tiny_imatrix_obj(), path)
    return path


def write_tiny_plan(path: Path, model: Path) -> Path:
    from lwq_app.core.modelfile.inventory import open_model
    from lwq_app.core.plan.quant_plan import plan_from_preset

    path.write_text(plan_from_preset(open_model(model), "Q4_K_M").to_json())
    return path


def make_all(folder: Path) -> dict[str, Path]:
    """Every seed file in ``folder`` (created once; deterministic bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "model": folder / "tiny.gguf",
        "imatrix": folder / "tiny.imatrix.gguf",
        "dat": folder / "tiny.imatrix.dat",
        "plan": folder / "tiny.plan.json",
    }
    writers = {
        "model": write_tiny_model,
        "imatrix": write_tiny_imatrix,
        "dat": write_tiny_dat,
        "plan": lambda p: write_tiny_plan(p, out["model"]),
    }
    for kind, writer in writers.items():  # written aside, then renamed: batches share them
        if not out[kind].exists():
            part = out[kind].with_name(f"part{os.getpid()}-{out[kind].name}")
            writer(part)
            os.replace(part, out[kind])
    return out
