"""llama.cpp's stock quantization mixes ("presets"), resolved per tensor.

A line-by-line port of ``llama_tensor_get_type`` / ``llama_tensor_get_type_impl`` from
``src/llama-quant.cpp`` of the pinned llama.cpp (llama-cpp-python 0.3.36), without user
overrides. It walks tensors in the quantizer's order (``weight_name_comparer``), keeps the
same attn_v / ffn_* counters, and returns the type llama.cpp would choose *before* the shape
fallback (the requested type); ``qtypes.effective_type`` then applies the fallback.
The golden types in ``tests/golden/types`` come from ``llama-quantize --dry-run`` and the
tests compare every preset, with and without an imatrix, on every fixture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..jobs.errors import InputError, PlanError, shown
from ..modelfile.inventory import ModelInfo, TensorInfo
from ..modelfile.type_catalog import FLOAT_FTYPES, TYPES


@dataclass(frozen=True)
class Preset:
    """A llama.cpp file type (``llama_ftype``) and its default tensor type."""

    name: str
    ftype: int
    default_type: str
    description: str = ""


_PRESETS = [
    Preset("F32", FLOAT_FTYPES["F32"], "F32", "32-bit floats"),
    Preset("F16", FLOAT_FTYPES["F16"], "F16", "16-bit floats"),
    Preset("BF16", FLOAT_FTYPES["BF16"], "BF16", "bfloat16"),
    Preset("Q4_0", 2, "Q4_0", "4.34G, +0.4685 ppl @ Llama-3-8B"),
    Preset("Q4_1", 3, "Q4_1", "4.78G, +0.4511 ppl @ Llama-3-8B"),
    Preset("Q8_0", 7, "Q8_0", "7.96G, +0.0026 ppl @ Llama-3-8B"),
    Preset("Q5_0", 8, "Q5_0", "5.21G, +0.1316 ppl @ Llama-3-8B"),
    Preset("Q5_1", 9, "Q5_1", "5.65G, +0.1062 ppl @ Llama-3-8B"),
    Preset("Q2_K", 10, "Q2_K", "2.96G, +3.5199 ppl @ Llama-3-8B"),
    Preset("Q3_K_S", 11, "Q3_K", "3.41G, +1.6321 ppl @ Llama-3-8B"),
    Preset("Q3_K_M", 12, "Q3_K", "3.74G, +0.6569 ppl @ Llama-3-8B"),
    Preset("Q3_K_L", 13, "Q3_K", "4.03G, +0.5562 ppl @ Llama-3-8B"),
    Preset("Q4_K_S", 14, "Q4_K", "4.37G, +0.2689 ppl @ Llama-3-8B"),
    Preset("Q4_K_M", 15, "Q4_K", "4.58G, +0.1754 ppl @ Llama-3-8B"),
    Preset("Q5_K_S", 16, "Q5_K", "5.21G, +0.1049 ppl @ Llama-3-8B"),
    Preset("Q5_K_M", 17, "Q5_K", "5.33G, +0.0569 ppl @ Llama-3-8B"),
    Preset("Q6_K", 18, "Q6_K", "6.14G, +0.0217 ppl @ Llama-3-8B"),
    Preset("IQ2_XXS", 19, "IQ2_XXS", "2.06 bpw"),
    Preset("IQ2_XS", 20, "IQ2_XS", "2.31 bpw"),
    Preset("Q2_K_S", 21, "Q2_K", "2.96G, +3.1836 ppl @ Llama-3-8B"),
    Preset("IQ3_XS", 22, "IQ3_S", "3.3 bpw"),
    Preset("IQ3_XXS", 23, "IQ3_XXS", "3.06 bpw"),
    Preset("IQ1_S", 24, "IQ1_S", "1.56 bpw"),
    Preset("IQ4_NL", 25, "IQ4_NL", "4.50 bpw non-linear"),
    Preset("IQ3_S", 26, "IQ3_S", "3.44 bpw"),
    Preset("IQ3_M", 27, "IQ3_S", "3.66 bpw"),
    Preset("IQ2_S", 28, "IQ2_XS", "2.5 bpw"),
    Preset("IQ2_M", 29, "IQ2_S", "2.7 bpw"),
    Preset("IQ4_XS", 30, "IQ4_XS", "4.25 bpw non-linear"),
    Preset("IQ1_M", 31, "IQ1_M", "1.75 bpw"),
]

PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}
PRESETS_BY_FTYPE: dict[int, Preset] = {p.ftype: p for p in _PRESETS}

#: the presets the issue tracker names as supported (quantized ones)
QUANT_PRESETS: tuple[str, ...] = tuple(p.name for p in _PRESETS if TYPES[p.default_type].quantized)

_IQ1_IQ2 = {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"}
_LOW_OUTPUT = {"IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"}


def get_preset(name: str) -> Preset:
    p = PRESETS.get(name.upper()) if isinstance(name, str) else None
    if p is None:
        raise KeyError(f"unknown preset '{shown(name, 40)}'; known: {', '.join(QUANT_PRESETS)}")
    return p


def check_preset(name: object, option: str, error: type[InputError] = InputError) -> Preset:
    """The preset ``name`` given to ``option`` (``--preset``, ``--base-ftype``, ``--compare``);
    ``error`` (an ``InputError``) naming the option and the known presets otherwise. The one
    check of a preset name, done before any work starts."""
    try:
        return get_preset(name)  # type: ignore[arg-type]
    except KeyError as e:
        raise error(f"{option}: {e.args[0]}") from None


def _category(name: str) -> str:
    """tensor_get_category: the broad class the mix rules key on."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for needle, cat in (
        ("attn_qkv.weight", "attn_qkv"),
        ("attn_kv_b.weight", "attn_kv_b"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):
        if needle in name:
            return cat
    return "other"


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or _cmod(i - n // 8, 3) == 2


def _cmod(a: int, b: int) -> int:
    """C's % (truncates toward zero), which differs from Python's for negative ``a``."""
    r = abs(a) % b
    return -r if a < 0 else r


def _cdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class _State:
    def __init__(self, model: ModelInfo, has_imatrix: bool) -> None:
        self.model = model
        self.has_imatrix = has_imatrix
        names = [t.name for t in model.tensors]
        self.n_attention_wv = sum(
            1 for n in names if _category(n) in ("attn_v", "attn_qkv", "attn_kv_b")
        )
        self.has_tied = "output.weight" not in names
        self.n_ffn = model.n_layer
        self.i_attention_wv = 0
        self.i_ffn_down = 0
        self.i_ffn_gate = 0
        self.i_ffn_up = 0
        self.n_expert = model.n_expert
        self.is_70b = (
            model.architecture == "llama"
            and model.n_layer == 80
            and (model.n_head != model.n_head_kv)
        )


def _layer_info(st: _State, counter: int, name: str) -> tuple[int, int]:
    if max(1, st.n_expert) > 1:
        parts = name.split(".")
        if len(parts) < 2 or parts[0] != "blk" or not parts[1].isascii() or not parts[1].isdigit():
            # llama.cpp's own "Failed to determine layer for tensor" (a runtime_error there)
            raise PlanError(
                f"{st.model.path}: tensor {shown(name, 80)}: cannot determine its layer "
                "(an expert model's ffn tensors must be named blk.N.…), as llama.cpp cannot"
            )
        return int(parts[1]), st.n_ffn
    return counter, st.n_ffn


def _impl(st: _State, new_type: str, t: TensorInfo, ftype: str, cat: str) -> str:
    m = st.model
    arch = m.architecture
    gqa = m.n_gqa
    n_expert = st.n_expert
    name = t.name
    if cat == "output" or (st.has_tied and cat == "token_embd"):
        nx = t.ne0
        qk_k = TYPES[new_type].block_size
        if arch == "falcon" or nx % qk_k != 0:
            new_type = "Q8_0"
        elif ftype in _LOW_OUTPUT:
            new_type = "Q5_K"
        elif new_type != "Q8_0":
            new_type = "Q6_K"
    elif cat == "token_embd":
        if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            new_type = "Q2_K"
        elif ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            new_type = "IQ3_S"
    elif ftype in _IQ1_IQ2:
        if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
            if gqa >= 4 or n_expert >= 4:
                new_type = "Q4_K"
            else:
                new_type = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
            st.i_attention_wv += 1
        elif n_expert == 8 and cat == "attn_k":
            new_type = "Q4_K"
        elif cat == "ffn_down":
            if st.i_ffn_down < st.n_ffn // 8:
                new_type = "IQ3_S" if ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
            st.i_ffn_down += 1
        elif cat == "attn_output":
            if n_expert == 8:
                new_type = "Q5_K"
            elif ftype in ("IQ1_S", "IQ1_M"):
                new_type = "IQ2_XXS"
            elif ftype in ("IQ2_S", "IQ2_M"):
                new_type = "IQ3_S"
    elif cat in ("attn_v", "attn_qkv", "attn_kv_b"):
        i, n = st.i_attention_wv, st.n_attention_wv
        if ftype == "Q2_K":
            new_type = "Q4_K" if gqa >= 4 else "Q3_K"
        elif ftype == "Q2_K_S" and gqa >= 4:
            new_type = "Q4_K"
        elif ftype == "IQ3_XXS":
            new_type = "Q4_K" if gqa >= 4 else ("IQ3_S" if not st.has_imatrix else "IQ3_XXS")
        elif (ftype in ("IQ3_XS", "IQ3_S") and gqa >= 4) or ftype == "IQ3_M":
            new_type = "Q4_K"
        elif ftype == "Q3_K_M":
            new_type = "Q5_K" if i < 2 else "Q4_K"
        elif ftype == "Q3_K_L" or (ftype in ("IQ4_NL", "IQ4_XS") and gqa >= 4):
            new_type = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new_type = "Q6_K"
        elif ftype == "Q4_K_S" and i < 4:
            new_type = "Q5_K"
        if st.is_70b and new_type in ("Q3_K", "Q4_K"):
            new_type = "Q5_K"
        if n_expert == 8:
            new_type = "Q8_0"
        st.i_attention_wv += 1
    elif cat == "attn_k":
        if n_expert == 8:
            new_type = "Q8_0"
        elif ftype == "IQ3_XS":
            new_type = "IQ3_XXS"
        elif ftype == "IQ3_XXS":
            new_type = "IQ2_S"
    elif cat == "attn_q":
        if ftype == "IQ3_XS":
            new_type = "IQ3_XXS"
        elif ftype == "IQ3_XXS":
            new_type = "IQ2_S"
    elif cat == "ffn_down":
        i_layer, n_layer = _layer_info(st, st.i_ffn_down, name)
        if ftype == "Q2_K":
            new_type = "Q3_K"
        elif ftype == "Q2_K_S":
            if i_layer < n_layer // 8:
                new_type = "Q4_K"
        elif ftype == "IQ3_XXS" and not st.has_imatrix:
            new_type = "Q4_K" if i_layer < n_layer // 8 else "Q3_K"
        elif ftype == "Q3_K_M":
            if i_layer < n_layer // 16:
                new_type = "Q5_K"
            elif arch != "falcon" or _use_more_bits(i_layer, n_layer):
                new_type = "Q4_K"
            else:
                new_type = "Q3_K"
        elif ftype == "IQ3_M" and (
            i_layer < n_layer // 8 or (n_expert == 8 and _use_more_bits(i_layer, n_layer))
        ):
            new_type = "Q4_K"
        elif ftype == "Q3_K_L":
            new_type = "Q4_K" if arch == "falcon" else "Q5_K"
        elif ftype == "Q4_K_M":
            if arch == "falcon":
                if i_layer < n_layer // 16:
                    new_type = "Q6_K"
                elif _use_more_bits(i_layer, n_layer):
                    new_type = "Q5_K"
                else:
                    new_type = "Q4_K"
            elif _use_more_bits(i_layer, n_layer):
                new_type = "Q6_K"
        elif i_layer < n_layer // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not st.has_imatrix:
            new_type = "Q5_K"
        elif ftype == "Q5_K_M" and _use_more_bits(i_layer, n_layer):
            new_type = "Q6_K"
        elif ftype == "Q4_K_S" and arch != "falcon" and i_layer < n_layer // 8:
            new_type = "Q5_K"
        elif ftype in ("Q4_0", "Q5_0") and st.has_imatrix and i_layer < n_layer // 8:
            new_type = "Q4_1" if ftype == "Q4_0" else "Q5_1"
        st.i_ffn_down += 1
    elif cat == "attn_output":
        if arch != "falcon":
            if n_expert == 8:
                if ftype in (
                    "Q2_K",
                    "IQ3_XS",
                    "IQ3_XXS",
                    "Q3_K_S",
                    "Q3_K_M",
                    "IQ4_NL",
                    "Q4_K_S",
                    "Q4_K_M",
                    "IQ3_S",
                    "IQ3_M",
                    "IQ4_XS",
                ):
                    new_type = "Q5_K"
            else:
                new_type = {
                    "Q2_K": "Q3_K",
                    "IQ3_XXS": "IQ3_S",
                    "Q3_K_M": "Q4_K",
                    "Q3_K_L": "Q5_K",
                    "IQ3_M": "Q4_K",
                }.get(ftype, new_type)
        elif ftype == "Q3_K_L":
            new_type = "Q4_K"
    elif cat == "attn_qkv":  # unreachable: attn_qkv is handled with attn_v above, as in C++
        pass
    elif cat == "ffn_gate":
        i_layer, n_layer = _layer_info(st, st.i_ffn_gate, name)
        if ftype == "IQ3_XS" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
            new_type = "IQ3_XXS"
        st.i_ffn_gate += 1
    elif cat == "ffn_up":
        i_layer, n_layer = _layer_info(st, st.i_ffn_up, name)
        if ftype == "IQ3_XS" and n_layer // 8 <= i_layer < 7 * n_layer // 8:
            new_type = "IQ3_XXS"
        st.i_ffn_up += 1
    return new_type


def resolve_preset(
    model: ModelInfo,
    preset: str,
    has_imatrix: bool,
    *,
    overrides: Mapping[str, str] | None = None,
    pure: bool = False,
) -> dict[str, str]:
    """Per-tensor *requested* types (before shape fallback) of a stock mix on ``model``.

    Non-quantizable tensors keep their current type. As ``llama-quantize [--pure]
    --tensor-type…`` does, and only when the mix's default type is quantized: a tensor in
    ``overrides`` (name -> type) gets that type and skips the mix rules *and their counters*
    (overriding ``blk.2.attn_v`` shifts the choice of every later attn_v); with ``pure`` every
    other tensor gets the default type.
    """
    p = get_preset(preset)
    st = _State(model, has_imatrix)
    out: dict[str, str] = {}
    for t in model.llama_order():
        if not t.quantizable:
            out[t.name] = t.type
            continue
        new_type = p.default_type
        if TYPES[new_type].quantized:
            if overrides is not None and t.name in overrides:
                new_type = overrides[t.name]
            elif not pure:
                new_type = _impl(st, new_type, t, p.name, _category(t.name))
        out[t.name] = new_type
    return out


def tensor_requires_imatrix(name: str, type_name: str, ftype: str | None) -> bool:
    """tensor_requires_imatrix: IQ1/IQ2/IQ3_XXS always, Q2_K only inside a Q2_K_S file."""
    if name in ("token_embd.weight", "per_layer_token_embd.weight", "output.weight"):
        return False
    if type_name == "Q2_K":
        return ftype == "Q2_K_S"
    return TYPES[type_name].needs_imatrix
