"""``lwq hub publish`` (variants and their model card to a Hub repo) and ``lwq hub login``.

``publish`` uses the saved token (``lwq hub login``, ``hf auth login``) or ``HF_TOKEN``; the
repo's URL and commit on stdout (``--json`` for a machine-readable result), the upload's
progress on stderr. ``--dry-run`` prints the card and uploads nothing.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from ..core.jobs.errors import InputError
from .output import ProgressBar, emit_json


def _request(a: argparse.Namespace) -> Any:
    from ..core.hub.publish import PublishRequest

    return PublishRequest(
        repo=a.repo,
        variants=tuple(Path(v) for v in a.variants),
        base_model=a.base_model,
        reference=Path(a.reference) if a.reference else None,
        private=a.private,
        project=Path(a.project) if a.project else None,
        license=a.license,
    )


def cmd_publish(a: argparse.Namespace) -> int:
    from ..core.hub.publish import preview_card, publish

    request = _request(a)
    if a.dry_run:
        card = preview_card(request)
        if a.json:
            emit_json({"repo": a.repo, "card": card, "dry_run": True})
        else:
            sys.stdout.write(card)
        return 0
    with ProgressBar() as bar:
        r = publish(request, progress=bar)
    if a.json:
        emit_json(
            {"url": r.url, "commit": r.commit, "files": list(r.files), "bytes": r.uploaded_bytes}
        )
    else:
        print(f"{r.url} (commit {r.commit[:12]}, {len(r.files)} files)")
    return 0


def cmd_login(a: argparse.Namespace) -> int:
    from ..core.hub.publish import check_token, save_token

    token = a.token
    if token is None:
        token = (
            sys.stdin.readline().strip()
            if not sys.stdin.isatty()
            else getpass.getpass("Hugging Face token (input hidden): ")
        )
    if not token:
        raise InputError("no token given (paste one from your account's Access Tokens page)")
    info = check_token(token) if a.check_only else save_token(token)
    if a.json:
        emit_json(
            {"user": info.user, "role": info.role, "scopes": list(info.scopes),
             "can_write": info.can_write, "saved": not a.check_only}
        )  # fmt: skip
    else:
        write = "may write" if info.can_write else "read only: publishing needs a write token"
        saved = "" if a.check_only else " (saved)"
        print(f"{info.user}: {info.role} token, {write}{saved}")
    return 0


def register(hub_sub: Any) -> None:
    """Add ``lwq hub publish`` and ``lwq hub login`` to the ``lwq hub`` parser."""
    p = hub_sub.add_parser(
        "publish",
        help="upload GGUF variants and a model card to a Hub repo",
        description=(
            "Create or reuse REPO and commit the variants, their model card (README.md, from "
            "the results store), custom plans and imatrix files in one commit."
        ),
    )
    p.add_argument("repo", metavar="REPO", help="ORG/NAME")
    p.add_argument("variants", nargs="+", metavar="VARIANT.gguf")
    p.add_argument("--base-model", metavar="ORG/NAME", help="the model the variants quantize")
    p.add_argument("--reference", metavar="F16.gguf", help="the float file sizes compare with")
    p.add_argument("--project", metavar="DIR", help="the project whose results table to show")
    p.add_argument("--license", metavar="ID", help="license id (default: the GGUF's)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--dry-run", action="store_true", help="print the card, upload nothing")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_publish)

    p = hub_sub.add_parser(
        "login",
        help="check a Hub token (whoami) and save it",
        description=(
            "Check a token with the Hub and save it where huggingface_hub keeps it "
            "(HF_HOME/token, readable by you only). Publishing needs the 'write' role or a "
            "fine-grained token with repo write access."
        ),
    )
    p.add_argument("--token", help="the token (default: read from stdin or a hidden prompt)")
    p.add_argument("--check-only", action="store_true", help="check it, do not save it")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_login)
