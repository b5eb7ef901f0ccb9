"""``lwq hub search``: models on the Hub, with estimated sizes and a fit for a memory target.

The results on stdout (a table, or ``--json``), one line per model; the sizes are estimates
(``core/hub/search.py`` says how they are made) and the note under the table says which.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core.jobs.units import format_size
from .output import emit_json


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    for step, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= step:
            return f"{n / step:.1f}{unit}"
    return str(n)


def _best_fit(hit: Any) -> str:
    """The largest of F16 and the mixes that fits the target ("none" if none does)."""
    if not hit.fits:
        return "?"
    order = ["F16", *hit.est_sizes]
    best = next((m for m in order if hit.fits.get(m)), "none")
    return best if hit.kv_bytes is not None else best + "*"


def cmd_search(a: argparse.Namespace) -> int:
    from ..core.hub.search import SearchRequest, search_models
    from ..core.hub.size_estimate import SEARCH_MIXES
    from ..core.jobs.arguments import size_option

    target = size_option(a.target_memory, "--target-memory") if a.target_memory else None
    fmt = "gguf" if a.gguf else "safetensors" if a.safetensors else "any"
    request = SearchRequest(
        query=a.query or "", format=fmt, author=a.author, sort=a.sort, limit=a.limit,
        task=None if a.task == "any" else a.task, target_memory=target, context=a.context,
    )  # fmt: skip
    result = search_models(request)
    if a.json:
        emit_json(
            {
                "endpoint": result.endpoint,
                "target_memory": target,
                "context": a.context,
                "hits": [h.to_json() for h in result.hits],
            }
        )
        return 0
    head = ["REPO", "PARAMS", "ARCH", "LICENSE", "GATED", "DOWNLOADS", "F16", *SEARCH_MIXES]
    if target is not None:
        head.append("FITS")
    rows = [head]
    for h in result.hits:
        sizes = [format_size(h.est_sizes[m]) if m in h.est_sizes else "?" for m in SEARCH_MIXES]
        row = [
            h.repo, _count(h.parameters), h.architecture or "?", h.license or "?",
            "gated" if h.gated else "-", str(h.downloads),
            format_size(h.est_f16_bytes) if h.est_f16_bytes is not None else "?", *sizes,
        ]  # fmt: skip
        if target is not None:
            row.append(_best_fit(h))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    if not result.hits:
        sys.stdout.write("no models found\n")
    notes = dict.fromkeys(h.estimate_note for h in result.hits)
    if notes:
        fit = (
            f"; FITS: the largest that fits {format_size(target, binary=True)} with the KV "
            f"cache at {a.context} tokens"
            if target is not None
            else ""
        )
        if target is not None and any(h.fits and h.kv_bytes is None for h in result.hits):
            fit += " (*: the weights alone, no config gives the KV cache's size)"
        sys.stdout.write(f"sizes of the weights are estimates{fit}:\n")
        for n in notes:
            sys.stdout.write(f"  {n}\n")
    return 0


def register(hub_sub: Any) -> None:
    """Add ``lwq hub search`` to the ``lwq hub`` parser."""
    from ..core.hub.search import SORTS

    p = hub_sub.add_parser(
        "search",
        help="search models on the Hub, with estimated sizes and fit",
        description=(
            "Search the Hugging Face Hub. Sizes are estimates: the stock mixes' rules on the "
            "config's shapes where the Hub gives them, else the parameter count at each "
            "mix's bits per weight."
        ),
    )
    p.add_argument("query", nargs="?", default="", help="text in the repo name")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gguf", action="store_true", help="only repos with GGUF files")
    g.add_argument("--safetensors", action="store_true", help="only repos with safetensors")
    p.add_argument("--author", metavar="NAME", help="only this user's or org's repos")
    p.add_argument("--sort", choices=list(SORTS), default="downloads")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="results (default 20)")
    p.add_argument(
        "--task",
        default="text-generation",
        metavar="TAG",
        help="pipeline tag (default text-generation; 'any' for every task)",
    )
    p.add_argument("--target-memory", metavar="SIZE", help="memory to fit in, e.g. 8GiB")
    p.add_argument("--context", type=int, default=4096, metavar="N", help="for --target-memory")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_search)
