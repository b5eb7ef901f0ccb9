"""The model card lwq publishes with a repo of quants: YAML front matter, the tables, the recipe.

The front matter is ``huggingface_hub.ModelCardData(...).to_yaml()``: ``base_model`` (the model
quantized), ``base_model_relation: quantized`` (an extra key the Hub reads to list the repo as a
quantization of that model), ``license``, ``tags`` and ``pipeline_tag``. The text is built
here, not with ``ModelCard.from_template`` (it needs Jinja2 templates). The tables are the
results store's, rendered by ``results.report`` (``render_card`` for a project's table,
``render_report`` for loose files), so the card never disagrees with the app; then the
hardware the speed figures ran on (llama-bench's ``cpu_info``/``gpu_info``/``backends``) and,
per variant, how it was made: the types per tensor kind and layer range, the imatrix data set,
the lwq and llama.cpp versions and the ``lwq quantize`` command that makes it again.

Everything here reads local files only (the GGUF header, the quantize sidecar, the results
file): no network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.errors import InputError, shown
from ..jobs.units import format_size
from ..modelfile.gguf_header import read_header
from ..modelfile.inventory import kind_sort_key, open_model
from ..plan.quantize import KV_IMATRIX_DATASET, KV_VERSION, sidecar_path
from ..results.store import load_results

#: the tags every card gets (besides the caller's)
BASE_TAGS = ("gguf", "lwq", "quantized")
_REPO = "[A-Za-z0-9][A-Za-z0-9._-]*"


def check_repo_id(repo: object, option: str = "repo") -> str:
    """``ORG/NAME`` as the Hub spells a repo id; ``InputError`` naming ``option`` otherwise."""
    import re

    if not isinstance(repo, str) or not re.fullmatch(f"{_REPO}/{_REPO}", repo) or ".." in repo:
        raise InputError(f"{option} {shown(repo, 80)!s}: expected ORG/NAME (a Hub repo id)")
    return repo


def _hf_repo(url: object) -> str | None:
    """``org/name`` from a Hub URL (``https://huggingface.co/org/name``) or a bare id."""
    if not isinstance(url, str) or not url.strip():
        return None
    text = url.strip().rstrip("/")
    for prefix in ("https://huggingface.co/", "http://huggingface.co/", "hf://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    parts = text.split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 and parts[0] and parts[1] else None


def base_model_from_gguf(path: Path) -> str | None:
    """The model a GGUF says it was made from: ``general.source.huggingface.repository`` or
    ``general.source.repo_url`` (the model converted), else ``general.base_model.0.*`` (the
    model the converted one was itself derived from, as its card said)."""
    meta = read_header(path).metadata
    for key in ("general.source.huggingface.repository", "general.source.repo_url",
                "general.source.url", "general.base_model.0.repo_url"):  # fmt: skip
        repo = _hf_repo(meta.get(key))
        if repo is not None:
            return repo
    org, name = meta.get("general.base_model.0.organization"), meta.get("general.base_model.0.name")
    if isinstance(org, str) and isinstance(name, str) and org and name:
        return f"{org}/{name}".replace(" ", "-")
    return None


def resolve_base_model(
    variants: Sequence[Path], given: str | None, sources: Sequence[Path] = ()
) -> str:
    """``base_model`` for the card: ``given`` (``--base-model``), else where a download
    recorded the source (``provenance.source_of``) of a variant or of one of ``sources`` (the
    float files they were made from: the project's base model and the paths opened into it,
    the reference), else their GGUF metadata; ``InputError`` asking for ``--base-model
    ORG/NAME`` when none says."""
    if given:
        return check_repo_id(given, "--base-model")
    from .provenance import source_of

    files = list(dict.fromkeys([*map(Path, variants), *map(Path, sources)]))
    for f in files:
        src = source_of(f)
        if src is not None:
            return check_repo_id(src.repo, f"{f.name}: recorded source")
    for f in files:
        repo = base_model_from_gguf(f) if f.is_file() and f.suffix == ".gguf" else None
        if repo is not None:
            return check_repo_id(repo, f"{f.name}: general.source / base_model")
    names = ", ".join(Path(v).name for v in variants)
    raise InputError(
        f"{names}: no base model recorded (not downloaded through lwq, no general.source or "
        "general.base_model in the GGUF): give it with --base-model ORG/NAME"
    )


# --- how each variant was made --------------------------------------------------------------------


@dataclass(frozen=True)
class VariantMaking:
    """How one variant was made, as its file, sidecar and results record it."""

    name: str
    file: str
    file_bytes: int
    preset: str | None
    groups: tuple[str, ...]  # "ffn_down: Q6_K (layers 0-3, 27-29), Q4_K (4-26)"
    imatrix: str | None  # the imatrix file's name (published beside the variants)
    imatrix_path: Path | None  # where it is here, when it still is
    imatrix_dataset: str | None
    lwq_version: str | None
    llama_cpp_version: str | None
    recipe: str
    plan: Mapping[str, Any] | None  # the plan JSON, published beside the file


def _ranges(layers: Sequence[int]) -> str:
    out, start, prev = [], None, None
    for i in sorted(layers):
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def type_groups(path: Path) -> tuple[str, ...]:
    """The file's tensor types per kind, with the layer ranges of each (quantized kinds and
    the non-layer tensors): the plan summary per layer group."""
    model = open_model(path)
    kinds: dict[str, dict[str, list[int]]] = {}
    single: list[str] = []
    for t in model.tensors:
        if not t.quantizable:
            continue
        if t.layer is None:
            single.append(f"{t.name.removesuffix('.weight')}: {t.type}")
            continue
        kinds.setdefault(t.kind, {}).setdefault(t.type, []).append(t.layer)
    lines = list(single)
    for kind in sorted(kinds, key=kind_sort_key):
        parts = sorted(kinds[kind].items(), key=lambda kv: (min(kv[1]), kv[0]))
        if len(parts) == 1:
            lines.append(f"{kind}: {parts[0][0]} (all {len(parts[0][1])} layers)")
        else:
            lines.append(
                f"{kind}: " + ", ".join(f"{typ} (layers {_ranges(ls)})" for typ, ls in parts)
            )
    return tuple(lines)


def _sidecar(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def variant_making(path: Path, source_name: str = "BASE-F16.gguf") -> VariantMaking:
    """How the variant at ``path`` was made (``source_name``: the float file the recipe
    quantizes, as the reader will have it)."""
    path = Path(path)
    meta = read_header(path).metadata
    side = _sidecar(path)
    plan = side.get("plan") if isinstance(side.get("plan"), dict) else None
    preset = plan.get("preset") if plan is not None else None
    if preset is None and plan is None:
        from ..results.variants import named_preset

        preset = named_preset(path.stem)
    stored = load_results(path)
    imx = side.get("imatrix")
    imatrix = Path(imx).name if isinstance(imx, str) and imx else None
    dataset = meta.get(KV_IMATRIX_DATASET)
    lwq_v = side.get("lwq_version") or meta.get(KV_VERSION)
    llama_v = side.get("llama_cpp_python")
    if stored.versions is not None:
        lwq_v = lwq_v or stored.versions.lwq
        llama_v = llama_v or stored.versions.llama_cpp_python
    how = f"--preset {preset}" if preset is not None else f"--plan plans/{path.stem}.json"
    imx_arg = f" --imatrix {imatrix}" if imatrix is not None else ""
    recipe = f"lwq quantize {source_name} {how}{imx_arg} -o {path.name}"
    return VariantMaking(
        name=path.stem,
        file=path.name,
        file_bytes=path.stat().st_size,
        preset=preset if isinstance(preset, str) else None,
        groups=type_groups(path),
        imatrix=imatrix,
        imatrix_path=Path(imx) if isinstance(imx, str) and imx and Path(imx).is_file() else None,
        imatrix_dataset=str(dataset) if isinstance(dataset, str) and dataset else None,
        lwq_version=str(lwq_v) if lwq_v else None,
        llama_cpp_version=str(llama_v) if llama_v else None,
        recipe=recipe,
        plan=None if preset is not None else plan,
    )


def speed_hardware(variants: Sequence[Path]) -> tuple[str, ...]:
    """The machines the variants' stored speed tests ran on, one line each, as llama-bench
    names them (CPU, GPU, backends, threads)."""
    seen: dict[str, None] = {}
    for v in variants:
        for r in load_results(Path(v)).bench:
            b = r.record
            gpu = f", GPU {b.gpu_info}" if b.gpu_info else ""
            layers = f", {b.n_gpu_layers} GPU layers" if b.n_gpu_layers else ""
            line = f"{b.cpu_info or 'unknown CPU'}{gpu} ({b.backends or 'CPU'}, {b.n_threads} threads{layers})"
            seen.setdefault(line, None)
    return tuple(seen)


# --- the card ----------------------------------------------------------------------------------


def card_metadata(
    base_model: str,
    license: str | None,
    pipeline_tag: str | None = "text-generation",
    tags: Sequence[str] = (),
) -> str:
    """The YAML front matter (without the ``---`` lines), from ``ModelCardData``."""
    from huggingface_hub import ModelCardData

    all_tags = list(dict.fromkeys([*tags, *BASE_TAGS]))
    data = ModelCardData(
        base_model=base_model,
        license=license,
        tags=all_tags,
        pipeline_tag=pipeline_tag,
        library_name="gguf",
        base_model_relation="quantized",
    )
    return str(data.to_yaml())


def model_card(
    *,
    repo: str,
    base_model: str,
    tables: str,
    making: Sequence[VariantMaking],
    hardware: Sequence[str] = (),
    license: str | None = None,
    pipeline_tag: str | None = "text-generation",
    tags: Sequence[str] = (),
) -> str:
    """The README.md text: front matter, title, the tables (markdown from ``results.report``),
    the speed tests' hardware and each variant's recipe."""
    out = ["---", card_metadata(base_model, license, pipeline_tag, tags).rstrip("\n"), "---", ""]
    out += [
        f"# {repo.split('/')[-1]}",
        "",
        f"GGUF quantizations of [{base_model}](https://huggingface.co/{base_model}), made and "
        "measured with lwq on llama.cpp.",
        "",
        "| File | Size | Mix |",
        "| --- | ---: | --- |",
    ]
    out += [f"| {m.file} | {format_size(m.file_bytes)} | {m.preset or 'custom'} |" for m in making]
    out += ["", tables.strip("\n"), "", "## Hardware", ""]
    if hardware:
        out.append("The speed figures ran on:")
        out += [f"- {h}" for h in hardware]
    else:
        out.append("No speed tests recorded.")
    out += ["", "## How each variant was made", ""]
    for m in making:
        out += [f"### {m.name}", ""]
        mix = f"llama.cpp's stock mix {m.preset}" if m.preset else "a custom lwq plan"
        out.append(f"- Plan: {mix}; tensor types by kind and layer:")
        out += [f"  - {g}" for g in m.groups]
        if m.imatrix:
            data = f" on {m.imatrix_dataset}" if m.imatrix_dataset else ""
            out.append(f"- Importance matrix: {m.imatrix}{data}")
        else:
            out.append("- Importance matrix: none")
        out.append(
            f"- lwq {m.lwq_version or 'unknown'}, llama.cpp (llama-cpp-python) "
            f"{m.llama_cpp_version or 'unknown'}"
        )
        out += ["- Reproduce:", "", "  ```sh", f"  {m.recipe}", "  ```", ""]
    return "\n".join(out).rstrip("\n") + "\n"
