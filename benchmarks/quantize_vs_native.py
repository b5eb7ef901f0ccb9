"""Wall time and peak RSS of ``lwq quantize`` vs ``llama-quantize`` on a generated ≥1 GB model.

Same plan (a stock mix: lwq reproduces it with one override per tensor), same threads, and
the same llama.cpp commit built with the same default CMake flags (the native tools from the
pinned llama-cpp-python sdist, see tests/golden/make_golden.py). Median of N alternating runs.
Targets: time ratio ≤ 1.05, peak RSS ≤ native + 200 MB.

    python benchmarks/quantize_vs_native.py --tools .ref/build/bin [--runs 3] [--preset Q4_K_M]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Run, measure, median


def make_model(path: Path, n_layer: int = 12, n_embd: int = 2048, n_ff: int = 5632,
               n_vocab: int = 32000) -> Path:  # fmt: skip
    """A llama-architecture F16 GGUF with random weights (~1.5 GB), written tensor by tensor."""
    from gguf import GGMLQuantizationType, GGUFWriter

    rng = np.random.default_rng(0)
    w = GGUFWriter(path, arch="llama")
    w.add_name("lwq-bench-random")
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(16)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // 16)
    w.add_vocab_size(n_vocab)
    w.add_file_type(1)
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("token_embd.weight", (n_vocab, n_embd)),
        ("output_norm.weight", (n_embd,)),
        ("output.weight", (n_vocab, n_embd)),
    ]
    kv = n_embd // 4
    for i in range(n_layer):
        p = f"blk.{i}."
        shapes += [
            (p + "attn_norm.weight", (n_embd,)), (p + "ffn_norm.weight", (n_embd,)),
            (p + "attn_q.weight", (n_embd, n_embd)), (p + "attn_k.weight", (kv, n_embd)),
            (p + "attn_v.weight", (kv, n_embd)), (p + "attn_output.weight", (n_embd, n_embd)),
            (p + "ffn_gate.weight", (n_ff, n_embd)), (p + "ffn_up.weight", (n_ff, n_embd)),
            (p + "ffn_down.weight", (n_embd, n_ff)),
        ]  # fmt: skip
    for name, shape in shapes:
        f32 = len(shape) == 1
        dt = np.dtype(np.float32 if f32 else np.float16)
        n = int(np.prod(shape))
        w.add_tensor_info(name, shape, dt, n * dt.itemsize,
                          raw_dtype=GGMLQuantizationType.F32 if f32 else GGMLQuantizationType.F16)  # fmt: skip
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _name, shape in shapes:
        if len(shape) == 1:
            w.write_tensor_data(np.ones(shape, np.float32))
        else:
            w.write_tensor_data((rng.standard_normal(shape, np.float32) * 0.02).astype(np.float16))
    w.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tools", type=Path, required=True, help="folder with llama-quantize")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="Q4_K_M")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="lwq-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "random-f16.gguf"
    if not model.exists():
        print("generating the model…", file=sys.stderr)
        make_model(model)
    size = model.stat().st_size
    print(f"model: {model} ({size / 1e9:.2f} GB F16), preset {a.preset}, threads {a.threads}")
    lwq = [sys.executable, "-m", "lwq_app.cli", "quantize", str(model), "--preset", a.preset,
           "--threads", str(a.threads), "-o", str(work / "lwq.gguf")]  # fmt: skip
    native = [str(a.tools / "llama-quantize"), str(model), str(work / "native.gguf"), a.preset,
              str(a.threads)]  # fmt: skip
    env = dict(os.environ)
    runs: dict[str, list[Run]] = {"lwq": [], "native": []}
    for i in range(a.runs):
        for name, cmd in (("native", native), ("lwq", lwq)) if i % 2 == 0 else (
                ("lwq", lwq), ("native", native)):  # fmt: skip
            r = measure(cmd, env)
            runs[name].append(r)
            print(f"run {i + 1} {name:6}: {r.seconds:7.2f} s  peak RSS {r.peak_rss / 1e6:8.1f} MB")
    t_l = median([r.seconds for r in runs["lwq"]])
    t_n = median([r.seconds for r in runs["native"]])
    m_l = median([r.peak_rss for r in runs["lwq"]])
    m_n = median([r.peak_rss for r in runs["native"]])
    from lwq_app.core.modelfile.inventory import open_model

    same = (
        open_model(work / "lwq.gguf").tensor_data_hash()
        == open_model(work / "native.gguf").tensor_data_hash()
    )
    print(
        f"median time: lwq {t_l:.2f} s, llama-quantize {t_n:.2f} s, ratio {t_l / t_n:.3f} (target ≤ 1.05)"
    )
    print(f"median peak RSS: lwq {m_l / 1e6:.1f} MB, llama-quantize {m_n / 1e6:.1f} MB, "
          f"difference {(m_l - m_n) / 1e6:+.1f} MB (target ≤ +200 MB)")  # fmt: skip
    print(f"tensor data identical: {same}")


if __name__ == "__main__":
    main()
