"""``lwq hub download``: what lwq needs of a model repo, into the Hugging Face cache.

The local path on stdout (the snapshot folder, or the GGUF), ``--json`` for the whole result;
progress in MB with the rate on stderr. A cancelled or broken download is resumed by running
the same command again; ``--pending`` lists what waits, ``--discard`` drops it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from ..core.jobs.errors import InputError
from ..core.jobs.progress import Phase, Progress
from ..core.jobs.units import format_size
from .output import ProgressBar, emit_json

_BYTES = (Phase.DOWNLOAD, Phase.VERIFY)


class _ByteBar:
    """The shared bar, with byte phases shown in MB and the current rate beside the file."""

    def __init__(self, bar: ProgressBar) -> None:
        from ..core.hub.transfer import TransferRate

        self._bar, self._rate = bar, TransferRate()

    def __call__(self, p: Progress) -> None:
        if p.phase not in _BYTES or p.total <= 1:
            self._bar(p)
            return
        rate, _ = self._rate.update(p)
        speed = f" {format_size(rate)}/s" if rate else ""
        mb = replace(p, done=round(p.done / 1e6, 1), total=round(p.total / 1e6, 1))
        self._bar(replace(mb, item=f"MB{speed} {p.item}"))


def cmd_download(a: argparse.Namespace) -> int:
    from ..core.hub import transfer
    from ..core.hub.download import DownloadRequest, check_request, download_model

    if a.pending:
        return _pending(a.json)
    if not a.repo:
        raise InputError("name a repo to download (ORG/NAME), or use --pending")
    request = DownloadRequest(a.repo, tuple(a.files), a.revision or "main")
    check_request(request)
    if a.discard:
        freed = transfer.discard_pending(a.repo, a.revision)
        if a.json:
            emit_json({"repo": a.repo, "revision": a.revision, "freed_bytes": freed})
        else:
            print(f"{a.repo}: discarded {format_size(freed)} of unfinished downloads")
        return 0
    with ProgressBar() as bar:
        r = download_model(request, progress=_ByteBar(bar))
    if a.json:
        emit_json(
            {
                "repo": r.repo,
                "commit": r.commit,
                "kind": r.kind,
                "path": str(r.path),
                "files": [str(p) for p in r.files],
                "downloaded_bytes": r.downloaded_bytes,
                "resumed_bytes": r.resumed_bytes,
            }
        )
    else:
        print(r.path)
    return 0


def _pending(as_json: bool) -> int:
    from ..core.hub.transfer import pending_downloads

    pending = pending_downloads()
    if as_json:
        emit_json([{**vars(p), "files": list(p.files)} for p in pending])
        return 0
    for p in pending:
        kind = "" if p.repo_type == "model" else f" ({p.repo_type})"
        sys.stdout.write(
            f"{p.repo}{kind}@{p.revision}: {format_size(p.have_bytes)} of "
            f"{format_size(p.total_bytes)} in {len(p.files)} file(s)\n"
        )
    if not pending:
        sys.stdout.write("no unfinished downloads\n")
    return 0


def register(hub_sub: Any) -> None:
    """Add ``download`` to the ``lwq hub`` sub-command parser."""
    p = hub_sub.add_parser(
        "download",
        help="download a model repo (safetensors or GGUF), resumable and verified",
        description=(
            "Download what lwq needs of a model repo into the Hugging Face cache (HF_HOME): "
            "its safetensors shards with config and tokenizer files, or one GGUF (all its "
            "shards, the most precise there is); FILE|GLOB picks files instead. Every LFS "
            "file's sha256 is checked against the Hub's. An interrupted download resumes when "
            "the command is run again. Prints the local path."
        ),
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help="the repo, as ORG/NAME")
    p.add_argument("files", nargs="*", metavar="FILE|GLOB", help="files to take instead")
    p.add_argument("--revision", default=None, metavar="R", help="branch, tag or commit")
    p.add_argument("--pending", action="store_true", help="list unfinished downloads")
    p.add_argument(
        "--discard", action="store_true", help="delete REPO's unfinished download instead"
    )
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_download)
