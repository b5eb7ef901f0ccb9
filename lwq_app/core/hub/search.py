"""Search the Hub for models, with estimated F16 and stock-mix sizes and a fit for a memory target.

One ``HfApi.list_models(expand=[…])`` call gives each result's parameter count (the Hub's
safetensors or GGUF metadata), architecture, license, gated flag, downloads and likes. Sizes and
the fit are **estimates** (``size_estimate``: the stock mixes' rules on the config's shapes,
else the parameter count at each mix's bits per weight; the KV cache where the config gives
layers and heads; no compute buffers).

The search runs in the calling thread (the app's worker, the CLI): it is one HTTP request
(plus, with a memory target, one small ``config.json`` per result the listing gave no shapes
for, fetched in parallel); cancel is checked between requests and a cancelled search is
abandoned rather than killed. ``repo_details`` is what the app fetches for one selected
result: its files with sizes and LFS sha256, the download selection, config and card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jobs.boundary import public_job
from ..jobs.errors import DownloadError, InputError, shown
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from .access import HubAccess, hub_access, hub_errors
from .repo_files import Selection, select_files
from .size_estimate import Shapes, SizeEstimate, estimate_sizes, fits

#: the sort keys lwq offers -> huggingface_hub's ``list_models(sort=)``
SORTS: dict[str, str] = {
    "downloads": "downloads",
    "likes": "likes",
    "trending": "trending_score",
    "updated": "last_modified",
}
FORMATS = ("any", "gguf", "safetensors")
#: what one ``list_models`` call asks the Hub for
EXPAND = [
    "safetensors", "gguf", "config", "gated", "downloads", "likes", "lastModified",
    "trendingScore", "cardData", "tags", "pipeline_tag", "library_name",
]  # fmt: skip
MAX_LIMIT = 200


@dataclass(frozen=True)
class SearchRequest:
    """One search: ``query`` in the repo names, a format filter (``gguf``/``safetensors``),
    ``author``, ``sort`` (``SORTS``), ``task`` (the pipeline tag; None for any) and, for the fit,
    ``target_memory`` bytes at ``context`` tokens."""

    query: str = ""
    format: str = "any"
    author: str | None = None
    sort: str = "downloads"
    limit: int = 20
    task: str | None = "text-generation"
    target_memory: int | None = None
    context: int = 4096
    token: str | None = None


@dataclass(frozen=True)
class SearchHit:
    """One result, with its estimated sizes (``est_*``) and fit for the request's target."""

    repo: str
    architecture: str | None
    parameters: int | None
    license: str | None
    gated: bool
    downloads: int
    likes: int
    updated: str | None  # ISO 8601, UTC
    formats: tuple[str, ...]
    est_f16_bytes: int | None
    est_sizes: Mapping[str, int]
    fits: Mapping[str, bool]
    estimate_note: str
    kv_bytes: int | None = None
    pipeline_tag: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo, "architecture": self.architecture, "parameters": self.parameters,
            "license": self.license, "gated": self.gated, "downloads": self.downloads,
            "likes": self.likes, "updated": self.updated, "formats": list(self.formats),
            "pipeline_tag": self.pipeline_tag, "est_f16_bytes": self.est_f16_bytes,
            "est_sizes": dict(self.est_sizes), "kv_bytes": self.kv_bytes,
            "fits": dict(self.fits), "estimate_note": self.estimate_note,
        }  # fmt: skip


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[SearchHit, ...]
    endpoint: str
    target_memory: int | None = None
    context: int = 4096


def check_request(r: SearchRequest) -> None:
    """``InputError`` naming the option for a request that cannot be sent."""
    if r.format not in FORMATS:
        raise InputError(f"format {shown(r.format, 40)!s}: choose from {', '.join(FORMATS)}")
    if r.sort not in SORTS:
        raise InputError(f"--sort {shown(r.sort, 40)}: choose from {', '.join(SORTS)}")
    if isinstance(r.limit, bool) or not isinstance(r.limit, int) or not 1 <= r.limit <= MAX_LIMIT:
        raise InputError(f"--limit {shown(r.limit, 40)}: a whole number from 1 to {MAX_LIMIT}")
    if isinstance(r.context, bool) or not isinstance(r.context, int) or r.context < 16:
        raise InputError(f"--context {shown(r.context, 40)}: at least 16 tokens")
    if r.target_memory is not None and (
        isinstance(r.target_memory, bool)
        or not isinstance(r.target_memory, int)
        or r.target_memory <= 0
    ):
        raise InputError(f"--target-memory {shown(r.target_memory, 40)}: a size above 0")


def _license(info: Any) -> str | None:
    card = getattr(info, "card_data", None)
    lic = getattr(card, "license", None) if card is not None else None
    if isinstance(lic, str) and lic:
        return lic
    tag = next((t for t in info.tags or () if isinstance(t, str) and t.startswith("license:")), "")
    return tag.removeprefix("license:") or None


def _parameters(info: Any) -> int | None:
    st = getattr(info, "safetensors", None)
    total = getattr(st, "total", None) if st is not None else None
    if isinstance(total, int) and total > 0:
        return total
    gguf = info.gguf if isinstance(getattr(info, "gguf", None), dict) else {}
    total = gguf.get("total")
    return total if isinstance(total, int) and total > 0 else None


def _architecture(info: Any) -> str | None:
    config = info.config if isinstance(getattr(info, "config", None), dict) else {}
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    gguf = info.gguf if isinstance(getattr(info, "gguf", None), dict) else {}
    arch = gguf.get("architecture") or config.get("model_type")
    return arch if isinstance(arch, str) else None


def _formats(info: Any) -> tuple[str, ...]:
    tags = set(info.tags or ())
    found = [f for f in ("safetensors", "gguf") if f in tags]
    if "safetensors" not in found and getattr(info, "safetensors", None):
        found.insert(0, "safetensors")
    if "gguf" not in found and getattr(info, "gguf", None):
        found.append("gguf")
    return tuple(found)


def make_hit(
    info: Any, request: SearchRequest, config: Mapping[str, Any] | None = None
) -> SearchHit:
    """A result from one ``huggingface_hub.ModelInfo`` of the listing (``config``: a fetched
    ``config.json`` where the listing's has no shapes)."""
    listed = info.config if isinstance(getattr(info, "config", None), dict) else None
    shapes = Shapes.from_config(listed) or Shapes.from_config(config)
    params = _parameters(info)
    est = estimate_sizes(params, shapes, request.context)
    modified = getattr(info, "last_modified", None)
    return SearchHit(
        repo=info.id,
        architecture=_architecture(info),
        parameters=params,
        license=_license(info),
        gated=bool(info.gated),
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        updated=modified.strftime("%Y-%m-%dT%H:%M:%SZ") if modified is not None else None,
        formats=_formats(info),
        est_f16_bytes=est.f16_bytes,
        est_sizes=est.sizes,
        fits=fits(est, request.target_memory),
        estimate_note=est.note,
        kv_bytes=est.kv_bytes,
        pipeline_tag=getattr(info, "pipeline_tag", None),
    )


def fetch_config(access: HubAccess, repo: str, revision: str = "main") -> dict[str, Any] | None:
    """The repo's ``config.json`` (through the HF cache), None where there is none or it
    cannot be read (a gated repo, a GGUF-only repo, a dropped connection): then the estimate
    has no shapes and says so."""
    import httpx2  # huggingface_hub 2.x's HTTP client
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(
            repo, "config.json", revision=revision, endpoint=access.endpoint,
            token=access.token or False, cache_dir=access.cache_dir,
        )  # fmt: skip
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (HfHubHTTPError, LocalEntryNotFoundError, httpx2.TransportError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@public_job("hub search")
def search_models(
    request: SearchRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> SearchResult:
    """Search the Hub (one ``list_models`` call) and estimate each result's sizes and fit
    (``Phase.SEARCH``: 0/1 before the listing, then one step per config fetched)."""
    check(cancel)
    check_request(request)
    access = hub_access(request.token)
    if access.offline:
        raise DownloadError("search: HF_HUB_OFFLINE is set, so lwq does not reach the Hub")
    filters = [] if request.format == "any" else [request.format]
    progress(Progress(Phase.SEARCH, 0, 1, request.query))
    with hub_errors(f"search {request.query!r}", access):
        infos = list(
            access.api().list_models(
                search=request.query or None, author=request.author or None,
                filter=filters or None, pipeline_tag=request.task or None,
                sort=SORTS[request.sort], limit=request.limit, expand=list(EXPAND),
            )
        )  # fmt: skip
    check(cancel)
    configs: dict[str, dict[str, Any] | None] = {}
    if request.target_memory is not None:
        configs = _configs(access, infos, progress, cancel)
    hits = tuple(make_hit(i, request, configs.get(i.id)) for i in infos)
    progress(Progress(Phase.SEARCH, 1, 1, request.query))
    return SearchResult(hits, access.endpoint, request.target_memory, request.context)


def _configs(
    access: HubAccess, infos: list[Any], progress: ProgressSink, cancel: CancelToken | None
) -> dict[str, dict[str, Any] | None]:
    """``config.json`` of the results whose listing gives no shapes (safetensors repos only:
    a GGUF repo has none), eight at a time; a gated one the token may not read has none."""
    wanted = [
        i.id
        for i in infos
        if Shapes.from_config(getattr(i, "config", None)) is None and "safetensors" in _formats(i)
    ]
    out: dict[str, dict[str, Any] | None] = {}
    if not wanted:
        return out
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {repo: pool.submit(fetch_config, access, repo) for repo in wanted}
        for n, (repo, fut) in enumerate(futures.items(), 1):
            if cancel is not None and cancel.cancelled:
                for f in futures.values():
                    f.cancel()
                check(cancel)
            out[repo] = fut.result()
            progress(Progress(Phase.SEARCH, n, len(wanted) + 1, repo))
    return out


# --- one repo's details ----------------------------------------------------------------------


@dataclass(frozen=True)
class RepoFile:
    """A file of a repo as the Hub lists it (``sha256``: LFS files only)."""

    name: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class RepoDetails:
    """What the app shows for the selected result: its files, what a download would take
    (``selection``, from ``repo_files.select_files``), config, parameters, license, gated,
    the card's text and the size estimate from the config's shapes."""

    repo: str
    commit: str | None
    files: tuple[RepoFile, ...]
    selection: Selection
    config: Mapping[str, Any] | None
    parameters: int | None
    license: str | None
    gated: bool
    card: str | None
    estimate: SizeEstimate
    safetensors_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


def _read_text(access: HubAccess, repo: str, path: str, revision: str) -> str | None:
    import httpx2
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = hf_hub_download(
            repo, path, revision=revision, endpoint=access.endpoint,
            token=access.token or False, cache_dir=access.cache_dir,
        )  # fmt: skip
        return Path(local).read_text(encoding="utf-8", errors="replace")
    except (HfHubHTTPError, LocalEntryNotFoundError, httpx2.TransportError, OSError):
        return None


@public_job("hub details")
def repo_details(
    repo: str,
    revision: str = "main",
    access: HubAccess | None = None,
    *,
    context: int = 4096,
    headers: bool = False,
) -> RepoDetails:
    """The details of one repo (``model_info(files_metadata=True)``, its ``config.json`` and
    README); with ``headers`` also every safetensors tensor's shape, read from the files'
    headers over HTTP ``Range`` requests (a few KB per shard, no weights)."""
    access = access or hub_access()
    with hub_errors(repo, access):
        info = access.api().model_info(repo, revision=revision, files_metadata=True)
    files = tuple(
        RepoFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs is not None else None)
        for s in info.siblings or ()
    )
    names = {f.name for f in files}
    config = fetch_config(access, repo, revision) if "config.json" in names else None
    card = _read_text(access, repo, "README.md", revision) if "README.md" in names else None
    params = _parameters(info)
    shapes_of: dict[str, tuple[int, ...]] = {}
    if headers and any(n.endswith(".safetensors") for n in names):
        with hub_errors(repo, access):
            meta = access.api().get_safetensors_metadata(repo, revision=revision)
        for fm in meta.files_metadata.values():
            for tname, t in fm.tensors.items():
                shapes_of[tname] = tuple(t.shape)
        params = params or sum(meta.parameter_count.values())
    return RepoDetails(
        repo=repo,
        commit=info.sha,
        files=files,
        selection=select_files(info.siblings or ()),
        config=config,
        parameters=params,
        license=_license(info),
        gated=bool(info.gated),
        card=card,
        estimate=estimate_sizes(params, Shapes.from_config(config), context),
        safetensors_shapes=shapes_of,
    )
