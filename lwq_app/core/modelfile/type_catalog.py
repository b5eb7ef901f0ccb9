"""The catalog of ggml tensor types llama.cpp can write, and its shape fallback rule.

Numbers are ggml's own type traits (block size, bytes per block) for the pinned llama.cpp;
``tests/core/test_qtypes.py`` checks every row against libggml. The fallback chain is
``tensor_type_fallback`` from ``src/llama-quant.cpp``: a type whose block does not divide a
tensor's row length (ne0) is replaced, and if the replacement does not fit either, F16 is used.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantType:
    """One ggml tensor type."""

    name: str
    ggml_id: int
    block_size: int
    type_size: int
    quantized: bool = True
    #: the type cannot be written without an importance matrix (tensor_requires_imatrix)
    needs_imatrix: bool = False
    #: the type llama.cpp substitutes when ne0 is not a multiple of ``block_size``
    fallback: str | None = None

    @property
    def bpw(self) -> float:
        """Bits per weight of the type itself (block overhead included)."""
        return self.type_size * 8 / self.block_size

    def row_bytes(self, ne0: int) -> int:
        """Bytes of one row of ``ne0`` elements (ne0 must be a multiple of the block size)."""
        return (ne0 // self.block_size) * self.type_size

    def fits(self, ne0: int) -> bool:
        return ne0 % self.block_size == 0


_TYPES = [
    QuantType("F32", 0, 1, 4, quantized=False),
    QuantType("F16", 1, 1, 2, quantized=False),
    QuantType("BF16", 30, 1, 2, quantized=False),
    QuantType("Q4_0", 2, 32, 18),
    QuantType("Q4_1", 3, 32, 20),
    QuantType("Q5_0", 6, 32, 22),
    QuantType("Q5_1", 7, 32, 24),
    QuantType("Q8_0", 8, 32, 34),
    QuantType("Q2_K", 10, 256, 84, fallback="Q4_0"),
    QuantType("Q3_K", 11, 256, 110, fallback="Q4_0"),
    QuantType("Q4_K", 12, 256, 144, fallback="Q5_0"),
    QuantType("Q5_K", 13, 256, 176, fallback="Q5_1"),
    QuantType("Q6_K", 14, 256, 210, fallback="Q8_0"),
    QuantType("IQ2_XXS", 16, 256, 66, needs_imatrix=True, fallback="IQ4_NL"),
    QuantType("IQ2_XS", 17, 256, 74, needs_imatrix=True, fallback="IQ4_NL"),
    QuantType("IQ3_XXS", 18, 256, 98, needs_imatrix=True, fallback="IQ4_NL"),
    QuantType("IQ1_S", 19, 256, 50, needs_imatrix=True, fallback="IQ4_NL"),
    QuantType("IQ4_NL", 20, 32, 18),
    QuantType("IQ3_S", 21, 256, 110, fallback="IQ4_NL"),
    QuantType("IQ2_S", 22, 256, 82, needs_imatrix=True, fallback="IQ4_NL"),
    QuantType("IQ4_XS", 23, 256, 136, fallback="IQ4_NL"),
    QuantType("IQ1_M", 29, 256, 56, needs_imatrix=True, fallback="IQ4_NL"),
    QuantType("TQ1_0", 34, 256, 54, fallback="Q4_0"),
    QuantType("TQ2_0", 35, 256, 66, fallback="Q4_0"),
]

TYPES: dict[str, QuantType] = {t.name: t for t in _TYPES}
TYPES_BY_ID: dict[int, QuantType] = {t.ggml_id: t for t in _TYPES}

#: ``llama_ftype`` of an unquantized file (``general.file_type``): all F32, mostly F16, mostly BF16
FLOAT_FTYPES: dict[str, int] = {"F32": 0, "F16": 1, "BF16": 32}

#: types a plan may request, roughly from fewest to most bits
PLANNABLE: tuple[str, ...] = (
    "IQ1_S",
    "IQ1_M",
    "IQ2_XXS",
    "IQ2_XS",
    "IQ2_S",
    "Q2_K",
    "IQ3_XXS",
    "IQ3_S",
    "Q3_K",
    "IQ4_XS",
    "IQ4_NL",
    "Q4_0",
    "Q4_1",
    "Q4_K",
    "Q5_0",
    "Q5_1",
    "Q5_K",
    "Q6_K",
    "Q8_0",
    "F16",
    "BF16",
    "F32",
)


#: the types Auto (and the plan editor's ladders) consider per tensor: every plannable type but
#: BF16/F32 (F16 is the lossless top of every frontier)
CANDIDATES: tuple[str, ...] = tuple(t for t in PLANNABLE if t not in ("BF16", "F32"))


def get_type(name: str) -> QuantType:
    """Look a type up by name (case-insensitive); unknown names raise ``KeyError`` naming it."""
    t = TYPES.get(name.upper())
    if t is None:
        raise KeyError(f"unknown tensor type {name!r}; known: {', '.join(PLANNABLE)}")
    return t


def type_by_id(ggml_id: int) -> QuantType:
    t = TYPES_BY_ID.get(ggml_id)
    if t is None:
        raise KeyError(f"unknown ggml type id {ggml_id}")
    return t


def effective_type(requested: str, ne0: int) -> str:
    """The type llama.cpp actually writes for a row length ``ne0`` (tensor_type_fallback)."""
    t = get_type(requested)
    if t.fits(ne0):
        return t.name
    if t.fallback is not None:
        fb = TYPES[t.fallback]
        if fb.fits(ne0):
            return fb.name
    return "F16"


def tensor_bytes(type_name: str, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of ``shape`` (ne0 first) stored as ``type_name``."""
    t = get_type(type_name)
    ne0 = shape[0]
    rows = 1
    for d in shape[1:]:
        rows *= d
    return rows * t.row_bytes(ne0)


def valid_types(ne0: int, plannable: tuple[str, ...] = PLANNABLE) -> list[str]:
    """Types whose blocks divide ``ne0`` (no fallback needed)."""
    return [n for n in plannable if TYPES[n].fits(ne0)]
