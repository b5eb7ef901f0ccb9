"""Export a plan as a reproduce recipe for llama.cpp's own ``llama-quantize``, and import one.

The recipe is the base ftype, ``--pure``, the imatrix, and a ``--tensor-type-file`` holding one
anchored, escaped name per quantizable tensor (``^blk\\.0\\.attn_q\\.weight$=q4_k``), so the
native tool writes exactly the plan's types. llama-quantize lowercases each pattern, so names
with capitals cannot be expressed and are refused.

Import (``parse_tensor_types``, ``plan_from_recipe``, ``import_recipe``) mirrors the pinned
llama.cpp (llama-cpp-python 0.3.36) exactly:

* ``tools/quantize/quantize.cpp``, ``parse_tensor_type_file``: the file is read token by token
  with ``file >> arg``, so ``PATTERN=TYPE`` entries are separated by any whitespace (spaces or
  newlines); there is no comment syntax (a ``#`` line is a malformed entry and llama-quantize
  stops). ``parse_tensor_type`` splits at the first ``=``, refuses an empty name or type,
  lowercases the pattern (ASCII ``tolower``: ``\\D`` becomes ``\\d``!) and looks the type up
  case-insensitively among ggml's type names (``parse_ggml_type``).
* ``src/llama-quant.cpp``: ``quantize_state_impl`` compiles each pattern once as a
  ``std::regex`` (ECMAScript); ``llama_tensor_get_type`` tries them *in the order given* with
  ``std::regex_search`` (a partial match: ``attn_v`` matches ``blk.3.attn_v.weight``) and the
  *first* match wins (``break``). Overrides are only looked at when the base ftype's default
  type is quantized (``ggml_is_quantized(default_type)``), and never for a tensor
  ``tensor_allows_quantization`` rejects (norms, routers…). A matched tensor skips the mix
  rules (``llama_tensor_get_type_impl``) *and their counters*: overriding ``blk.2.attn_v``
  shifts the Q4_K_M choice of every later attn_v (checked with a dry run on SmolLM2). An
  unmatched tensor gets the default type with ``--pure``, else the mix rules. The shape
  fallback (``tensor_type_fallback``) runs after either. A pattern that matches nothing is
  silently ignored by llama.cpp; here it is reported (``RecipeImport.unused``).

Python's ``re`` stands in for ECMAScript ``std::regex``; they agree on the patterns recipes
use (literals, escapes, classes, groups, alternation, anchors).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..jobs.atomic import atomic_write_text
from ..jobs.boundary import public_job
from ..jobs.errors import PlanError, shown
from ..jobs.progress import CancelToken, ProgressSink, check, no_progress
from ..modelfile.inventory import ModelInfo
from ..modelfile.type_catalog import TYPES, get_type
from .quant_plan import (
    PlanRequest,
    QuantPlan,
    make_plan,
    plan_from_preset,
    plan_from_types,
    read_small_text,
)
from .quantize import choose_base_ftype, override_pattern
from .stock_mixes import check_preset, resolve_preset


@dataclass(frozen=True)
class Recipe:
    base_ftype: str
    tensor_types: str  # content of the --tensor-type-file
    n_overrides: int

    def command(
        self,
        model: str,
        output: str,
        types_file: str,
        imatrix: str | None = None,
        threads: int = 0,
        tool: str = "llama-quantize",
    ) -> list[str]:
        cmd = [tool, "--pure"]
        if imatrix:
            cmd += ["--imatrix", imatrix]
        cmd += ["--tensor-type-file", types_file, model, output, self.base_ftype]
        if threads:
            cmd.append(str(threads))
        return cmd

    def command_line(self, *args: str | None, **kwargs: object) -> str:
        return shlex.join(self.command(*args, **kwargs))  # type: ignore[arg-type]


def make_recipe(plan: QuantPlan, base_ftype: str | None = None) -> Recipe:
    """The recipe for ``plan``; ``base_ftype`` (a preset name, checked first) defaults to the
    plan's preset, else its dominant type."""
    base = check_preset(base_ftype, "--base-ftype").name if base_ftype else None
    lines = []
    for t in plan.quantized_tensors():
        if t.name != t.name.lower():
            raise PlanError(
                f"tensor {shown(t.name)}: llama-quantize lowercases patterns; cannot express it"
            )
        lines.append(f"{override_pattern(t.name)}={t.effective.lower()}")
    return Recipe(base or choose_base_ftype(plan), "\n".join(lines) + "\n", len(lines))


@dataclass(frozen=True)
class RecipeRequest:
    """The llama-quantize command that rebuilds the plan in ``plan_file`` for ``model``.

    ``types_file`` (default: ``PLAN.tensor-types.txt`` beside the plan) receives the
    ``--tensor-type-file``; ``output`` (default: ``MODEL-lwq.gguf`` beside the model) is the
    file the command would write; ``base_ftype`` defaults to the plan's preset."""

    model: Path
    plan_file: Path
    types_file: Path | None = None
    output: Path | None = None
    imatrix: Path | None = None
    threads: int = 0
    base_ftype: str | None = None


@dataclass(frozen=True)
class RecipeResult:
    command: tuple[str, ...]
    tensor_type_file: Path
    n_overrides: int
    base_ftype: str

    def to_json(self) -> dict[str, Any]:
        """The ``lwq recipe --json`` object."""
        return {
            "command": list(self.command),
            "tensor_type_file": str(self.tensor_type_file),
            "n_overrides": self.n_overrides,
            "base_ftype": self.base_ftype,
        }


@public_job("recipe")
def export_recipe(
    request: RecipeRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> RecipeResult:
    """Write the ``--tensor-type-file`` and return the command that uses it (instant)."""
    check(cancel)
    r = request
    plan = make_plan(PlanRequest(r.model, plan_file=r.plan_file), cancel=cancel).plan
    recipe = make_recipe(plan, r.base_ftype)
    types_file = r.types_file or r.plan_file.with_suffix(".tensor-types.txt")
    out = r.output or r.model.with_name(r.model.stem + "-lwq.gguf")
    imatrix = None if r.imatrix is None else str(r.imatrix)
    cmd = recipe.command(str(r.model), str(out), str(types_file), imatrix, r.threads)
    check(cancel)
    atomic_write_text(types_file, recipe.tensor_types)
    return RecipeResult(tuple(cmd), types_file, recipe.n_overrides, recipe.base_ftype)


# --- import ----------------------------------------------------------------------------------

#: a recipe is a few hundred kB even for the largest MoE models
MAX_RECIPE_BYTES = 16 << 20
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
#: the whitespace of C++'s ``operator>>`` (isspace in the C locale), without the newline
_BLANKS = re.compile(r"[ \t\v\f\r]+")
#: an exact name as ``override_pattern`` writes it: ``^`` + escaped literal + ``$``
_EXACT = re.compile(r"\^((?:[^\\^$.|?*+()\[\]{}]|\\[\\^$.|?*+()\[\]{}])*)\$")
_UNESCAPE = re.compile(r"\\(.)")


def _parse_entry(spec: str, where: str) -> tuple[str, str]:
    """One ``PATTERN=TYPE`` as ``parse_tensor_type`` reads it: pattern lowercased, type
    canonical; the regex is compiled here so a bad one is reported at its line."""
    name, sep, type_name = spec.partition("=")
    if not sep:
        raise PlanError(f"{where}: malformed tensor type {shown(spec, 80)} (expected PATTERN=TYPE)")
    if not name:
        raise PlanError(f"{where}: missing tensor name in {shown(spec, 80)}")
    if not type_name:
        raise PlanError(f"{where}: missing quantization type in {shown(spec, 80)}")
    return _checked(name.translate(_ASCII_LOWER), type_name, where)


def _checked(pattern: str, type_name: str, where: str) -> tuple[str, str]:
    """``(pattern, canonical type)``; ``PlanError`` at ``where`` for an unknown type or a
    regex that does not compile."""
    try:
        qt = get_type(type_name)
    except KeyError as e:
        raise PlanError(f"{where}: {shown(e.args[0], 300)}") from None
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        raise PlanError(
            f"{where}: invalid regex {shown(pattern, 80)}: {shown(str(e), 120)}"
        ) from None
    return pattern, qt.name


def parse_tensor_types(text: str, source: str = "recipe") -> tuple[tuple[str, str], ...]:
    """The ``(pattern, TYPE)`` overrides of a ``--tensor-type-file`` (entries separated by any
    whitespace, as llama-quantize reads it), or of a pasted llama-quantize command line: a text
    with ``--`` options yields the values of its ``--tensor-type PATTERN=TYPE`` /
    ``--tensor-type=PATTERN=TYPE`` options, unquoted as a shell would, and ignores the rest
    (pass the base ftype and ``--pure`` to ``plan_from_recipe``). Errors (``PlanError``) name
    ``source`` and the line: bad syntax, an unknown type, an invalid regex."""
    lines = text.split("\n")
    if any(tok.startswith("--") for line in lines for tok in _BLANKS.split(line)):
        return _parse_command(lines, source)
    out: list[tuple[str, str]] = []
    for n, line in enumerate(lines, 1):
        for tok in _BLANKS.split(line):
            if tok:
                out.append(_parse_entry(tok, f"{source}:{n}"))
    return tuple(out)


def _parse_command(lines: list[str], source: str) -> tuple[tuple[str, str], ...]:
    """The ``--tensor-type`` values of a command line (``\\`` continuations allowed)."""
    out: list[tuple[str, str]] = []
    pending: int | None = None  # line of a --tensor-type still waiting for its value
    type_file: tuple[int, str] | None = None
    want_file = False
    for n, line in enumerate(lines, 1):
        body = line.rstrip(" \t\r")
        if body.endswith("\\") and not body.endswith("\\\\"):
            body = body[:-1]
        try:
            tokens = shlex.split(body, comments=False, posix=True)
        except ValueError as e:
            raise PlanError(f"{source}:{n}: cannot split the command line: {e}") from None
        for tok in tokens:
            if pending is not None:
                out.append(_parse_entry(tok, f"{source}:{n}"))
                pending = None
            elif want_file:
                type_file, want_file = (n, tok), False
            elif tok == "--tensor-type":
                pending = n
            elif tok.startswith("--tensor-type="):
                out.append(_parse_entry(tok[len("--tensor-type=") :], f"{source}:{n}"))
            elif tok == "--tensor-type-file":
                want_file = True
            elif tok.startswith("--tensor-type-file="):
                type_file = (n, tok[len("--tensor-type-file=") :])
    if pending is not None:
        raise PlanError(f"{source}:{pending}: --tensor-type without a PATTERN=TYPE value")
    if not out and type_file is not None:
        raise PlanError(
            f"{source}:{type_file[0]}: the command reads its tensor types from "
            f"{shown(type_file[1], 120)}; import that file instead"
        )
    return tuple(out)


@dataclass(frozen=True)
class UnusedOverride:
    """An override that decided no tensor's type, and why."""

    index: int  # 0-based position among the overrides
    pattern: str
    type_name: str
    reason: str

    def message(self, source: str) -> str:
        return (
            f"{source}: override #{self.index + 1} {shown(self.pattern, 80)}={self.type_name.lower()} "
            f"{self.reason}"
        )


@dataclass(frozen=True)
class RecipeImport:
    """A recipe as llama-quantize would apply it to a model: the plan, how many tensors the
    overrides set, and the overrides without effect (llama.cpp ignores them silently)."""

    plan: QuantPlan
    n_overridden: int
    unused: tuple[UnusedOverride, ...]
    source: str = "recipe"

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(u.message(self.source) for u in self.unused)


def _first_matches(
    model: ModelInfo, patterns: Sequence[str]
) -> tuple[dict[str, int], list[set[str]]]:
    """For each quantizable tensor the index of the first pattern ``re.search`` matches, and
    for each pattern every tensor it matches. Exact anchored names (an lwq export: one per
    tensor) are looked up in a dict instead of searched, so a 600-line recipe is instant."""
    exact: dict[str, int] = {}
    regex: list[tuple[int, re.Pattern[str]]] = []
    hits: list[set[str]] = [set() for _ in patterns]
    for k, p in enumerate(patterns):
        m = _EXACT.fullmatch(p)
        if m is None:
            regex.append((k, re.compile(p)))
            continue
        name = _UNESCAPE.sub(r"\1", m.group(1))
        exact.setdefault(name, k)
        if name in model.by_name:
            hits[k].add(name)
    first: dict[str, int] = {}
    for t in model.tensors:
        best = exact.get(t.name)
        for k, rx in regex:
            if rx.search(t.name):
                hits[k].add(t.name)
                if best is None or k < best:
                    best = k
        if best is not None and t.quantizable:
            first[t.name] = best
    return first, hits


def recipe_import(
    model: ModelInfo,
    overrides: Sequence[tuple[str, str]],
    base_ftype: str,
    *,
    pure: bool = False,
    with_imatrix: bool = False,
    source: str = "recipe",
) -> RecipeImport:
    """Apply ``overrides`` (``parse_tensor_types``' output: patterns already lowercased) to
    ``model`` as ``llama-quantize [--pure] --tensor-type… MODEL OUT base_ftype`` would (see
    the module docstring). ``PlanError`` for an unknown base ftype, a bad override, or a
    recipe none of whose patterns matches a tensor of ``model`` (another model's recipe)."""
    preset = check_preset(base_ftype, f"{source}: base ftype", PlanError)
    patterns: list[str] = []
    types: list[str] = []
    for k, item in enumerate(overrides):
        if not (
            isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)
        ):
            raise PlanError(
                f"{source}: override #{k + 1} {shown(item, 80)}: expected (pattern, type)"
            )
        pattern, type_name = _checked(*item, f"{source}: override #{k + 1}")
        patterns.append(pattern)
        types.append(type_name)
    if not TYPES[preset.default_type].quantized:  # llama.cpp does not look at the overrides
        plan = plan_from_preset(model, preset.name, with_imatrix)
        why = f"is ignored: base ftype {preset.name} is not quantized, so llama-quantize uses no override"
        ignored = tuple(
            UnusedOverride(k, p, t, why)
            for k, (p, t) in enumerate(zip(patterns, types, strict=True))
        )
        return RecipeImport(plan, 0, ignored, source)

    first, hits = _first_matches(model, patterns)
    resolved = resolve_preset(
        model, preset.name, with_imatrix, overrides={n: types[k] for n, k in first.items()},
        pure=pure,
    )  # fmt: skip
    requested = {t.name: resolved[t.name] for t in model.tensors if t.quantizable}
    used = set(first.values())
    if patterns and not used:
        raise PlanError(
            f"{source}: none of its {len(patterns)} pattern(s) matches a tensor of "
            f"{model.path.name} that llama.cpp quantizes (first: {shown(patterns[0], 80)}); "
            "is it a recipe for another model?"
        )
    unused: list[UnusedOverride] = []
    quantizable = {t.name for t in model.tensors if t.quantizable}
    for k, (p, ty) in enumerate(zip(patterns, types, strict=True)):
        if k in used:
            continue
        if not hits[k]:
            why = f"matches no tensor of {model.path.name}"
        elif not hits[k] & quantizable:
            why = "matches only tensors llama.cpp never quantizes"
        else:
            why = "has no effect: an earlier pattern matches each of its tensors first"
        unused.append(UnusedOverride(k, p, ty, why))
    plan = plan_from_types(model, requested, source=source, with_imatrix=with_imatrix)
    stock = plan_from_preset(model, preset.name, with_imatrix)
    if plan.effective_types() == stock.effective_types():
        plan = replace(plan, preset=preset.name, _index={})
    if unused:
        plan = replace(
            plan, note=f"imported from {source}; {len(unused)} override(s) had no effect", _index={}
        )
    return RecipeImport(plan, len(first), tuple(unused), source)


def plan_from_recipe(
    model: ModelInfo,
    overrides: Sequence[tuple[str, str]],
    base_ftype: str,
    *,
    pure: bool = False,
    with_imatrix: bool = False,
    source: str = "recipe",
) -> QuantPlan:
    """The plan llama-quantize writes for ``model`` with these overrides (``recipe_import``'s
    plan; overrides without effect are named by ``recipe_import`` and counted in the note)."""
    return recipe_import(
        model, overrides, base_ftype, pure=pure, with_imatrix=with_imatrix, source=source
    ).plan


def read_recipe_text(path: Path) -> str:
    """A recipe file's text; ``PlanError`` naming the file if it is missing, huge or not UTF-8."""
    return read_small_text(Path(path), MAX_RECIPE_BYTES, "tensor-type file", "a tensor-type file")


def import_recipe(
    path: Path,
    model: ModelInfo,
    base_ftype: str,
    *,
    pure: bool = False,
    with_imatrix: bool = False,
) -> QuantPlan:
    """``plan_from_recipe`` of a ``--tensor-type-file`` (or a saved command line) on disk;
    errors name the file (and the line)."""
    p = Path(path)
    overrides = parse_tensor_types(read_recipe_text(p), str(p))
    return plan_from_recipe(
        model, overrides, base_ftype, pure=pure, with_imatrix=with_imatrix, source=str(p)
    )
