"""Which files of a Hub repo a download needs: pure, from the file names alone.

A model repo often carries its weights several times (``*.safetensors`` and ``pytorch_model*.bin``,
Mistral's ``consolidated.*``, Meta's ``original/`` folder, ONNX or Flax exports) and a GGUF
repo a dozen quantizations. lwq needs one copy: the safetensors shards with the config and
tokenizer files the converter reads, or one GGUF (all its ``-0000N-of-0000M`` shards), the
most precise there is, since lwq quantizes from it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..jobs.errors import InputError

#: what the converter (and transformers) read beside the weights
COMPANIONS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "README.md",
)
#: weights lwq never takes: duplicates of the safetensors in other formats
DUPLICATES = (
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "consolidated.*",
    "original/*",
    "*.onnx",
    "*.onnx_data",
    "*.msgpack",
    "*.h5",
    "*.tflite",
    "*.mlmodel",
    "*.gguf",
)

_SHARD = re.compile(r"^(?P<stem>.*)-(?P<n>\d{5})-of-(?P<m>\d{5})\.gguf$", re.IGNORECASE)
#: a GGUF's type as its name gives it; full precision first, then quantized by bits
_FLOAT = {"BF16": 0, "F16": 1, "FP16": 1, "F32": 2, "FP32": 2}
_QUANT = re.compile(r"(?<![A-Z0-9])(I?Q\d+(?:_[A-Z0-9]+)*|TQ\d_\d|MXFP4)(?![A-Z0-9])", re.I)
_FLOAT_NAME = re.compile(r"(?<![A-Z0-9])(BF16|FP16|F16|FP32|F32)(?![A-Z0-9])", re.IGNORECASE)
#: a quantized type's suffix, larger first (Q4_K_L > Q4_K_M > Q4_K_S)
_SIZE_RANK = {"XL": 0, "L": 1, "M": 2, "S": 3, "XS": 4, "XXS": 5}

QUANTIZED_NOTE = (
    "this repo has no full-precision (BF16/F16/F32) GGUF: lwq upcasts the quantized one to "
    "quantize from it, which loses nothing more but cannot regain the precision its "
    "quantization lost; a safetensors repo of the model is the better source"
)


class _Named(Protocol):
    rfilename: str


@dataclass(frozen=True)
class Selection:
    """The files a download takes (in the repo's order) and the ones it leaves."""

    kind: Literal["safetensors", "gguf", "none"]
    files: tuple[str, ...]
    skipped: tuple[str, ...]
    note: str = ""


def _name(s: str | _Named) -> str:
    return s if isinstance(s, str) else s.rfilename


def _matches(name: str, patterns: Iterable[str]) -> bool:
    base = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(base, p) for p in patterns)


def select_files(siblings: Iterable[str | _Named], patterns: Sequence[str] = ()) -> Selection:
    """The files to download from a repo holding ``siblings`` (names, or the Hub's
    ``RepoSibling`` objects). ``patterns`` (file names or globs, matched against the path or
    its last part) override the choice; a GGUF shard they pick brings its other shards.
    ``InputError`` names a pattern that matches nothing."""
    names = [_name(s) for s in siblings]
    if patterns:
        return _by_patterns(names, patterns)
    shards = [
        n
        for n in names
        if n.lower().endswith(".safetensors")
        and "/" not in n
        and not _matches(n, ("consolidated*", "adapter_model*"))
    ]
    if shards:
        keep = set(shards) | {
            n for n in names if n in COMPANIONS or n.endswith(".safetensors.index.json")
        }
        files = tuple(n for n in names if n in keep)
        skipped = tuple(n for n in names if n not in keep)
        note = ""
        if any(_matches(n, DUPLICATES) for n in skipped):
            note = (
                "other copies of the weights (.bin, consolidated.*, original/, GGUF …) are skipped"
            )
        return Selection("safetensors", files, skipped, note)
    return _best_gguf(names)


def _by_patterns(names: list[str], patterns: Sequence[str]) -> Selection:
    for p in patterns:
        if not any(_matches(n, (p,)) for n in names):
            listed = ", ".join(names[:12]) + (" …" if len(names) > 12 else "")
            raise InputError(f"no file of the repo matches {p!r}; it has: {listed or 'no files'}")
    picked = {n for n in names if _matches(n, patterns)}
    for n in list(picked):  # a shard brings its set
        if m := _SHARD.match(n):
            picked |= {k for k in names if (o := _SHARD.match(k)) and _same_set(m, o)}
    files = tuple(n for n in names if n in picked)
    ggufs = [n for n in files if n.lower().endswith(".gguf")]
    has_st = any(n.lower().endswith(".safetensors") for n in files)
    kind: Literal["safetensors", "gguf", "none"] = (
        "safetensors" if has_st else "gguf" if ggufs else "none"
    )
    note = ""
    if kind == "gguf" and all(_precision(n)[0] > 2 for n in ggufs):
        note = QUANTIZED_NOTE
    skipped = tuple(n for n in names if n not in picked)
    return Selection(kind, files, skipped, note)


def _same_set(a: re.Match[str], b: re.Match[str]) -> bool:
    return a["stem"] == b["stem"] and a["m"] == b["m"]


def _precision(name: str) -> tuple[int, int, int, str]:
    """A sort key, most precise first: floats (BF16 < F16 < F32), then quantized types by
    bits (more first) and size suffix; unknown last."""
    base = name.rsplit("/", 1)[-1]
    if m := _FLOAT_NAME.search(base):
        return (_FLOAT[m.group(1).upper()], 0, 0, name)
    if m := _QUANT.search(base):
        q = m.group(1).upper()
        bits = int(re.search(r"\d+", q).group()) if re.search(r"\d+", q) else 0  # type: ignore[union-attr]
        suffix = q.rsplit("_", 1)[-1] if "_" in q else ""
        return (3, -bits, _SIZE_RANK.get(suffix, 6), name)
    return (4, 0, 0, name)


def _best_gguf(names: list[str]) -> Selection:
    ggufs = [
        n
        for n in names
        if n.lower().endswith(".gguf") and "mmproj" not in n.rsplit("/", 1)[-1].lower()
    ]
    if not ggufs:
        weights = [n for n in names if _matches(n, DUPLICATES)]
        what = f"only {', '.join(weights[:6])}" if weights else "no weights lwq can read"
        return Selection(
            "none",
            (),
            tuple(names),
            f"no safetensors or GGUF files ({what}): lwq reads safetensors (to convert) or GGUF",
        )
    best = min(ggufs, key=_precision)
    files = [best]
    if m := _SHARD.match(best):
        files = sorted(n for n in ggufs if (o := _SHARD.match(n)) and _same_set(m, o))
    picked = set(files)
    rank = _precision(best)[0]
    label = _type_label(best)
    if rank <= 2:
        note = f"the {label} GGUF: full precision, the best source to quantize from"
    else:
        note = f"the {label} GGUF, the most precise here; " + QUANTIZED_NOTE
    skipped = tuple(n for n in names if n not in picked)
    return Selection("gguf", tuple(files), skipped, note)


def _type_label(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    m = _FLOAT_NAME.search(base) or _QUANT.search(base)
    return m.group(1).upper() if m else base
