"""How a Hub job reaches the Hub: endpoint, token, cache, offline and Xet, read when it starts.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HUB_DISABLE_XET`` and ``HF_HOME``
once, when it is first imported; an app that runs for hours (or a test that sets them) must not
depend on that moment. Every Hub job takes a ``HubAccess`` built by ``hub_access()`` when the
job starts, passes ``endpoint=`` and ``token=`` explicitly to ``HfApi`` and hands the same
snapshot to its child process, where ``apply_to_environment`` sets the variables before
huggingface_hub is imported there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jobs.errors import DownloadError, InputError

DEFAULT_ENDPOINT = "https://huggingface.co"

_TRUE = {"1", "ON", "YES", "TRUE"}


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in _TRUE


def hf_home() -> Path:
    """``HF_HOME`` (default ``~/.cache/huggingface``, under ``XDG_CACHE_HOME`` where set)."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(xdg).expanduser() / "huggingface"


def hub_cache_dir() -> Path:
    """huggingface_hub's model/dataset cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return hf_home() / "hub"


def token_path() -> Path:
    """Where the saved token lives (``HF_TOKEN_PATH``, else ``HF_HOME/token``), as
    huggingface_hub's ``hf auth login`` writes it."""
    if os.environ.get("HF_TOKEN_PATH"):
        return Path(os.environ["HF_TOKEN_PATH"]).expanduser()
    return hf_home() / "token"


def saved_token() -> str | None:
    """The token from ``HF_TOKEN`` (or ``HUGGING_FACE_HUB_TOKEN``), else the saved token file."""
    env = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if env and env.strip():
        return env.strip()
    try:
        text = token_path().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now."""
    return _is_true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))


@dataclass(frozen=True)
class HubAccess:
    """The Hub as one job sees it. ``token`` is None for anonymous access."""

    endpoint: str
    token: str | None
    cache_dir: Path
    offline: bool
    disable_xet: bool

    def api(self) -> Any:
        """An ``HfApi`` bound to this endpoint and token."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token or False)

    def url(self, repo: str, repo_type: str = "model") -> str:
        """The repo's page on this endpoint."""
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
        return f"{self.endpoint}/{prefix}{repo}"

    def environment(self) -> dict[str, str]:
        """The variables a child process sets before it imports huggingface_hub."""
        env = {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_CACHE": str(self.cache_dir),
            "HF_HUB_OFFLINE": "1" if self.offline else "0",
            "HF_HUB_DISABLE_XET": "1" if self.disable_xet else "0",
            # the progress lwq shows is its own; huggingface_hub's bars would go to a log
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        if self.token:
            env["HF_TOKEN"] = self.token
        return env


def hub_access(token: str | None = None) -> HubAccess:
    """The access a job starting now has: ``token`` if given, else the environment's or the
    saved one; ``HF_ENDPOINT``, ``HF_HUB_CACHE``/``HF_HOME``, ``HF_HUB_OFFLINE`` and
    ``HF_HUB_DISABLE_XET`` as they are now."""
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")
    return HubAccess(
        endpoint=endpoint,
        token=(token.strip() or None) if token is not None else saved_token(),
        cache_dir=hub_cache_dir(),
        offline=offline(),
        disable_xet=_is_true(os.environ.get("HF_HUB_DISABLE_XET")),
    )


def apply_to_environment(access: HubAccess) -> None:
    """In a child process, before huggingface_hub is imported: make its import-time constants
    agree with ``access``."""
    os.environ.update(access.environment())
    if not access.token:
        os.environ.pop("HF_TOKEN", None)
        os.environ.pop("HUGGING_FACE_HUB_TOKEN", None)


@contextlib.contextmanager
def hub_errors(what: str, access: HubAccess) -> Iterator[None]:
    """Turn huggingface_hub's errors into lwq's one-line messages naming ``what`` (a repo, a
    file): a gated or missing repo, a bad token, no network."""
    import httpx2  # huggingface_hub 2.x's HTTP client
    from huggingface_hub import errors

    where = f"{what} on {access.endpoint}"
    try:
        yield
    except errors.GatedRepoError:
        raise DownloadError(
            f"{where} is gated: accept its conditions on the repo's page "
            f"({access.endpoint}/{what.split(':')[0]}) with your account, then log in with a "
            f"token of that account ({'the token given was refused' if access.token else 'no token is set'})"
        ) from None
    except errors.RepositoryNotFoundError:
        raise DownloadError(
            f"{where}: no such repo, or it is private and "
            + ("this token cannot read it" if access.token else "no token is set (log in)")
        ) from None
    except errors.RevisionNotFoundError:
        raise DownloadError(f"{where}: no such revision (branch, tag or commit)") from None
    except errors.RemoteEntryNotFoundError:
        raise DownloadError(f"{where}: no such file in the repo") from None
    except errors.OfflineModeIsEnabled:
        raise DownloadError(
            f"{where}: HF_HUB_OFFLINE is set, so lwq does not reach the Hub; unset it to "
            "search, download or publish"
        ) from None
    except errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 401:
            raise InputError(
                f"{where}: the token was refused (401): check it on your account's "
                "Access Tokens page and log in again"
            ) from None
        if status == 403:
            raise InputError(
                f"{where}: the token may not do this (403): it needs the 'write' role, or a "
                "fine-grained token with write access to this repo"
            ) from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(f"{where}: {first}") from None
    except httpx2.TransportError as e:  # no route, refused, timed out, TLS
        raise DownloadError(
            f"{where}: cannot reach the Hub ({type(e).__name__}: {e}); check the network, "
            "HF_ENDPOINT and proxy settings"
        ) from None
