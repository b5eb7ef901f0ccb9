"""The Hugging Face Hub: search, resumable verified downloads, conversion of a safetensors
folder to GGUF with llama.cpp's own converter, publishing quants with a model card, and the
evaluation and calibration datasets lwq fetches.

Every job takes the Hub as it is when the job starts (``access.hub_access``: ``HF_ENDPOINT``,
the token, ``HF_HOME``, ``HF_HUB_OFFLINE``, ``HF_HUB_DISABLE_XET``) and passes ``endpoint=``
explicitly; network transfers and the converter run in child processes, so cancel kills them.
"""

from __future__ import annotations

from .access import HubAccess, hub_access, saved_token
from .byte_progress import TransferRate
from .cache_layout import PendingDownload, RemoteFile, discard_pending, pending_downloads
from .card import model_card, resolve_base_model
from .convert import ConvertRequest, ConvertResult, SourceFolder, convert_model, inspect_source
from .datasets import (
    CATALOG,
    FetchRequest,
    FetchResult,
    Form,
    HubDataset,
    cached,
    dataset,
    fetch,
    fetch_dataset,
)
from .defaults import (
    EvalText,
    TaskFile,
    default_eval_text,
    hub_task_file,
)
from .download import DownloadPlan, DownloadRequest, DownloadResult, download_model, plan_download
from .provenance import Source, record_source, source_of
from .publish import (
    PublishRequest,
    PublishResult,
    TokenInfo,
    check_token,
    preview_card,
    publish,
    save_token,
)
from .repo_files import Selection, select_files
from .search import (
    RepoDetails,
    RepoFile,
    SearchHit,
    SearchRequest,
    SearchResult,
    repo_details,
    search_models,
)
from .size_estimate import SizeEstimate, estimate_sizes
from .transfer import TransferResult, download_files

__all__ = [
    "CATALOG",
    "ConvertRequest",
    "ConvertResult",
    "DownloadPlan",
    "DownloadRequest",
    "DownloadResult",
    "EvalText",
    "FetchRequest",
    "FetchResult",
    "Form",
    "HubAccess",
    "HubDataset",
    "PendingDownload",
    "PublishRequest",
    "PublishResult",
    "RemoteFile",
    "RepoDetails",
    "RepoFile",
    "SearchHit",
    "SearchRequest",
    "SearchResult",
    "Selection",
    "SizeEstimate",
    "Source",
    "SourceFolder",
    "TaskFile",
    "TokenInfo",
    "TransferRate",
    "TransferResult",
    "cached",
    "check_token",
    "convert_model",
    "dataset",
    "default_eval_text",
    "discard_pending",
    "download_files",
    "download_model",
    "estimate_sizes",
    "fetch",
    "fetch_dataset",
    "hub_access",
    "hub_task_file",
    "inspect_source",
    "model_card",
    "pending_downloads",
    "plan_download",
    "preview_card",
    "publish",
    "record_source",
    "repo_details",
    "resolve_base_model",
    "save_token",
    "saved_token",
    "search_models",
    "select_files",
    "source_of",
]
