"""``lwq hub …`` (search, download, publish) and ``lwq convert``: the Hub's two ends.

Each sub-command lives in its own module with a ``register(sub)``; this one only groups the
``hub`` ones under one parser. Same grammar as every command: the result on stdout (``--json``
for a machine-readable one), progress on stderr.
"""

from __future__ import annotations

from typing import Any

from . import convert_command, hub_download_command, hub_publish_command, hub_search_command


def register(sub: Any) -> None:
    """Add ``lwq hub`` and ``lwq convert`` to the ``lwq`` sub-command parser."""
    hub = sub.add_parser(
        "hub",
        help="search, download and publish models on the Hugging Face Hub",
        description=(
            "The Hugging Face Hub (HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE and the saved token "
            "are read when a command starts)."
        ),
    )
    hub_sub = hub.add_subparsers(dest="hub_command", required=True, metavar="HUB_COMMAND")
    for group in (hub_search_command, hub_download_command, hub_publish_command):
        group.register(hub_sub)
    convert_command.register(sub)
