"""``lwq fetch``: evaluation and calibration datasets from the Hugging Face Hub.

Same grammar as ``cli.py``: the result (local paths) on stdout, progress on stderr, ``--json``
for a machine-readable result. The files land in huggingface_hub's cache (``HF_HOME``) and,
when lwq converts them, in ``~/.cache/lwq/data``; ``core/hub/datasets.py`` says where each
comes from.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..core.jobs.errors import InputError
from .output import ProgressBar, emit_json

if TYPE_CHECKING:
    from ..core.hub.datasets import HubDataset


def cmd_fetch(a: argparse.Namespace) -> int:
    from ..core.hub import datasets as hubdata

    if a.list:
        return _list(a.json)
    if not a.names:
        raise InputError(f"name a dataset to fetch ({', '.join(hubdata.CATALOG)}), or use --list")
    fetched = [hubdata.dataset(n) for n in a.names]  # every name checked before any download
    results = []
    for ds in fetched:
        with ProgressBar() as bar:
            r = hubdata.fetch_dataset(hubdata.FetchRequest(ds.name), progress=bar)
        results.append({**_describe(r.dataset), "path": str(r.path)})
        if not a.json:
            print(r.path)
    if a.json:
        emit_json(results)
    return 0


def _describe(ds: HubDataset) -> dict[str, Any]:
    return {
        "name": ds.name,
        "repo": ds.repo,
        "filename": ds.filename,
        "revision": ds.revision,
        "description": ds.description,
        "license": ds.license,
        "size": ds.size or None,
        "task": ds.task.value if ds.task else None,
    }


def _list(as_json: bool) -> int:
    from ..core.hub import datasets as hubdata

    rows = [(ds, hubdata.cached(ds.name)) for ds in hubdata.CATALOG.values()]
    if as_json:
        emit_json([{**_describe(ds), "cached": str(p) if p else None} for ds, p in rows])
        return 0
    table = [("NAME", "SIZE", "LICENSE", "CACHED", "SOURCE", "WHAT")]
    table += [
        (
            ds.name,
            ds.size or "?",
            ds.license,
            "yes" if p else "no",
            f"{ds.repo}/{ds.filename}",
            ds.description,
        )
        for ds, p in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        cells = [c.ljust(w) for c, w in zip(r[:5], widths, strict=True)]
        sys.stdout.write("  ".join([*cells, r[5]]) + "\n")
    return 0


def register(sub: Any) -> None:
    """Add ``lwq fetch`` to the ``lwq`` sub-command parser."""
    p = sub.add_parser("fetch", help="download evaluation/calibration datasets from the Hub")
    p.add_argument("names", nargs="*", metavar="NAME", help="dataset(s) to fetch (see --list)")
    p.add_argument("--list", action="store_true", help="list the datasets, sizes and licenses")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_fetch)
