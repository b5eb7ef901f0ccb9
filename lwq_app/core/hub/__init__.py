"""The Hugging Face Hub: the evaluation and calibration datasets lwq fetches, cached, and
what lwq takes from them by default."""

from __future__ import annotations

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

__all__ = [
    "CATALOG",
    "EvalText",
    "FetchRequest",
    "FetchResult",
    "Form",
    "HubDataset",
    "TaskFile",
    "cached",
    "dataset",
    "default_eval_text",
    "fetch",
    "fetch_dataset",
    "hub_task_file",
]
