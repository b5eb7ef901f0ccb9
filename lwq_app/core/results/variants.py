"""The project's variants as files: which stock mix a file is, the stock mixes nearest a size,
checking a GGUF added from disk against the base, renaming and deleting.

A *stock mix* is a file whose plan is exactly one of llama.cpp's presets (``plan_from_preset``
with or without an imatrix, compared by plan hash), or, for a file that did not come from one
of the project's named plans, one whose name says so (``smollm2-Q4_K_M.gguf``). The preset
plans of a model are computed once per model and imatrix flag (``stock_plans``), so that a
40-variant table costs dictionary lookups, not 40 × 60 plans.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from ..jobs.errors import InputError, OutputError, shown
from ..modelfile.gguf_header import read_header
from ..modelfile.inventory import ModelInfo, open_model
from ..plan.file_size import predict_file_size
from ..plan.quant_plan import QuantPlan, plan_from_preset, writable_presets
from ..plan.quantize import sidecar_path
from ..plan.readback import plan_from_gguf
from ..plan.stock_mixes import QUANT_PRESETS
from .project import ProjectState, Variant, check_plan_name
from .store import results_path

_TOKENS = "tokenizer.ggml.tokens"


@dataclass(frozen=True)
class StockPlans:
    """The presets a project can write (with its imatrix, or those that need none), by name,
    and every preset's plan hash (with and without an imatrix) -> its name."""

    plans: Mapping[str, QuantPlan]
    by_hash: Mapping[str, str]

    def tensor_bytes(self) -> dict[str, int]:
        return {name: p.size_bytes for name, p in self.plans.items()}


_stock_cache: dict[tuple[str, bool], StockPlans] = {}
_stock_lock = threading.Lock()


def stock_plans(model: ModelInfo, with_imatrix: bool) -> StockPlans:
    """The stock mixes of ``model`` that can be written (``writable_presets``) and every
    preset's plan hash with and without an imatrix, cached per model and flag."""
    key = (model.fingerprint(), bool(with_imatrix))
    with _stock_lock:
        hit = _stock_cache.get(key)
    if hit is not None:
        return hit
    plans = writable_presets(model, bool(with_imatrix))
    by_hash: dict[str, str] = {}
    for name in QUANT_PRESETS:
        for imx in (True, False):
            same = imx == bool(with_imatrix) and name in plans
            p = plans[name] if same else plan_from_preset(model, name, imx)
            by_hash.setdefault(p.content_hash(), name)
    out = StockPlans(MappingProxyType(plans), MappingProxyType(by_hash))
    with _stock_lock:
        if len(_stock_cache) > 16:
            _stock_cache.clear()
        _stock_cache[key] = out
    return out


#: preset names, longest first, so Q4_K_M is found before Q4_K
_BY_LENGTH = sorted(QUANT_PRESETS, key=len, reverse=True)


def named_preset(name: str) -> str | None:
    """The preset a file or variant name says it is (``smollm2-Q4_K_M`` -> ``Q4_K_M``), the
    name's letters and digits around it not part of it; None if it names none."""
    up = name.upper()
    for p in _BY_LENGTH:
        if re.search(rf"(?<![A-Z0-9]){re.escape(p)}(?![A-Z0-9])", up):
            return p
    return None


def stock_mix_of(variant: Variant, stock: StockPlans) -> str | None:
    """The stock mix ``variant`` is: by its plan hash, or (a file not made from one of the
    project's named plans) by its file name."""
    hit = stock.by_hash.get(variant.plan_sha256)
    if hit is not None:
        return hit
    if variant.plan_name is None:
        return named_preset(variant.path.stem) or named_preset(variant.name)
    return None


# --- the stock mixes nearest a size ------------------------------------------------------------


@dataclass(frozen=True)
class StockMix:
    """A stock mix as the project would write it: its plan and its predicted file size."""

    name: str
    plan: QuantPlan
    file_bytes: int


def stock_mix_sizes(model: ModelInfo, imatrix: Path | None) -> tuple[StockMix, ...]:
    """Every stock mix the project can write (with ``imatrix``), smallest file first."""
    stock = stock_plans(model, imatrix is not None)
    mixes = [
        StockMix(name, p, predict_file_size(p, model, imatrix=imatrix).total)
        for name, p in stock.plans.items()
    ]
    return tuple(sorted(mixes, key=lambda m: (m.file_bytes, m.name)))


def nearest_stock_mixes(
    model: ModelInfo, size: int, imatrix: Path | None
) -> tuple[StockMix | None, StockMix | None]:
    """The stock mixes whose predicted file is nearest below and nearest above ``size``
    bytes (strictly: a mix of exactly that size is the variant itself, not a neighbour);
    None where there is none."""
    mixes = stock_mix_sizes(model, imatrix)
    below = [m for m in mixes if m.file_bytes < size]
    above = [m for m in mixes if m.file_bytes > size]
    return (below[-1] if below else None), (above[0] if above else None)


def stock_mix_output(folder: Path, model: ModelInfo, preset: str) -> Path:
    """Where the project writes its copy of a stock mix: ``<model name>-<preset>.gguf`` in
    ``folder``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model.name).strip("-.") or model.path.stem
    return Path(folder) / f"{stem}-{preset}.gguf"


# --- a GGUF added from disk --------------------------------------------------------------------


def _tokens(path: Path) -> list[str] | None:
    value = read_header(path, keep_strings=(_TOKENS,)).metadata.get(_TOKENS)
    return list(value) if isinstance(value, list) else None


def _same_base(path: Path, info: ModelInfo, base: ModelInfo) -> None:
    """``InputError`` naming ``path`` and the first thing that shows another model."""
    why = f"{path}: not a quantization of {base.path.name}"
    if info.architecture != base.architecture:
        raise InputError(
            f"{why}: architecture {shown(info.architecture, 40)}, the base is "
            f"{shown(base.architecture, 40)}"
        )
    got = info.by_name
    for t in base.tensors:
        w = got.get(t.name)
        if w is None:
            raise InputError(f"{why}: it has no tensor {shown(t.name, 80)}")
        if w.shape != t.shape:
            raise InputError(
                f"{why}: tensor {shown(t.name, 80)} has shape {list(w.shape)}, the base "
                f"has {list(t.shape)}"
            )
    names = base.by_name
    extra = next((w.name for w in info.tensors if w.name not in names), None)
    if extra is not None:
        raise InputError(f"{why}: it has a tensor {shown(extra, 80)} the base has not")
    if info.n_vocab != base.n_vocab:
        raise InputError(
            f"{why}: its vocabulary has {info.n_vocab} tokens, the base's {base.n_vocab}"
        )
    mine, theirs = _tokens(path), _tokens(base.path)
    if mine != theirs:
        i = next(
            (i for i, (a, b) in enumerate(zip(mine or [], theirs or [], strict=False)) if a != b),
            None,
        )
        where = (
            f"token {i} is {shown(mine[i], 40)!r}, the base's {shown(theirs[i], 40)!r}"
            if (i is not None and mine is not None and theirs is not None)
            else "the token lists differ"
        )
        raise InputError(f"{why}: another vocabulary ({where})")


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def check_variant_file(path: Path, base: ModelInfo) -> Variant:
    """The project variant for a GGUF from disk (a stock mix made with ``llama-quantize``,
    someone's upload of the same base): same architecture, tensor names and shapes and
    vocabulary as ``base``, else ``InputError`` naming the file and the first mismatch. Its
    plan comes from the lwq sidecar or from the file's tensor types (``plan_from_gguf``); a
    file whose types are a stock mix's gets that mix's plan hash, so it shows as that mix."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    if path.resolve() == base.path.resolve():
        raise InputError(f"{path}: is the project's base model, not a variant of it")
    info = open_model(path)
    _same_base(path, info, base)
    plan = plan_from_gguf(path, base)
    digest = plan.content_hash()
    if plan.preset is not None:  # the preset's own plan, as a file quantize made from it has
        want = plan.effective_types()
        for imx in (plan.with_imatrix, not plan.with_imatrix):
            ref = plan_from_preset(base, plan.preset, imx)
            if ref.effective_types() == want:
                digest = ref.content_hash()
                break
    st = path.stat()
    return Variant(
        name=path.name.removesuffix(".gguf"),
        path=path.resolve(),
        plan_name=None,
        plan_sha256=digest,
        file_bytes=st.st_size,
        created=_stamp(st.st_mtime),
    )


def add_variant(state: ProjectState, variant: Variant) -> ProjectState:
    """The state with ``variant`` (a file already recorded is replaced in place)."""
    return state.with_variant(variant)


def _find(state: ProjectState, path: Path) -> Variant:
    p = Path(path)
    for v in state.variants:
        if v.path == p or v.path.resolve() == p.resolve():
            return v
    raise InputError(f"{p}: not a variant of project {state.name!r}")


def rename_variant(state: ProjectState, path: Path, name: str) -> ProjectState:
    """The state with the variant at ``path`` called ``name`` (the file keeps its name);
    ``InputError`` for a bad or taken name."""
    v = _find(state, path)
    try:
        check_plan_name(name)
    except InputError as e:
        raise InputError(str(e).replace("plan name", "variant name", 1)) from None
    if any(o.name == name and o.path != v.path for o in state.variants):
        raise InputError(f"project {state.name!r} already has a variant named {name!r}")
    return state.with_variant(replace(v, name=name))


def variant_files(path: Path) -> tuple[Path, ...]:
    """The files a variant is: the GGUF, lwq's plan sidecar and its results file."""
    p = Path(path)
    return (p, sidecar_path(p), results_path(p))


def delete_variant(state: ProjectState, path: Path) -> ProjectState:
    """Delete the variant's files (``variant_files``, those that exist) and return the state
    without it. The base model is never deleted; ``OutputError`` naming a file that cannot
    be removed (the files before it are gone, the state still lists the variant)."""
    v = _find(state, path)
    if v.path.resolve() == Path(state.base_model).resolve():
        raise InputError(f"{v.path}: is the project's base model; it is not deleted")
    for f in variant_files(v.path):
        try:
            f.unlink(missing_ok=True)
        except OSError as e:
            raise OutputError(f"{f}: cannot delete ({e.strerror})") from None
    return state.without_variant(v.path)
