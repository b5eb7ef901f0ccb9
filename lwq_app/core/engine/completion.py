"""A greedy completion through llama-cpp-python's ``Llama`` (the demo's sanity check).

Perplexity and KLD are llama-perplexity's method, in ``core/evaluate`` over ``LlamaSession``;
the job that runs this in a child process is ``core/evaluate/generate.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..jobs.errors import ModelFileError
from .common import LogTail, _init_null_log, captured_log, safe_default_model_params, with_reason


def greedy_completion(
    path: str,
    prompt: str,
    n_tokens: int = 24,
    threads: int = 0,
    *,
    on_loaded: Callable[[], None] | None = None,
) -> str:
    """The ``n_tokens`` greedy (top-1) continuation of ``prompt`` by the model at ``path``.

    ``on_loaded()`` is called once the model is loaded, before the first decode."""
    from llama_cpp import Llama

    _init_null_log()
    kwargs: dict[str, Any] = {
        "model_path": path,
        "n_ctx": 256,
        "n_batch": 256,
        "logits_all": False,
        "verbose": False,
    }
    if threads:
        kwargs["n_threads"] = threads
    tail = LogTail()
    try:
        with captured_log(tail), safe_default_model_params():
            llm = Llama(**kwargs)
    except ValueError as e:  # llama_cpp's "Failed to load model from file"
        raise ModelFileError(
            with_reason(f"{path}: llama.cpp could not load the model", tail)
        ) from e
    try:
        if on_loaded is not None:
            on_loaded()
        out: Any = llm(prompt, max_tokens=n_tokens, temperature=0.0, top_k=1)
        return str(out["choices"][0]["text"])
    finally:
        llm.close()
