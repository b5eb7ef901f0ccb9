"""Model loading through llama-cpp-python's ``Llama`` and a greedy completion (for demos/tests).

Perplexity and KLD live in ``core/evaluate.py`` (llama-perplexity's method)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .common import _init_null_log, captured_log


@contextlib.contextmanager
def loaded_model(
    path: str, n_ctx: int = 512, threads: int = 0, logits_all: bool = True
) -> Iterator[Any]:
    """A ``llama_cpp.Llama`` for ``path``, closed on exit."""
    from llama_cpp import Llama

    _init_null_log()
    kwargs: dict[str, Any] = {
        "model_path": path,
        "n_ctx": n_ctx,
        "n_batch": n_ctx,
        "logits_all": logits_all,
        "verbose": False,
    }
    if threads:
        kwargs["n_threads"] = threads
    with captured_log(None):
        llm = Llama(**kwargs)
    try:
        yield llm
    finally:
        llm.close()


def greedy_completion(path: str, prompt: str, n_tokens: int = 24, threads: int = 0) -> str:
    with loaded_model(path, 256, threads, logits_all=False) as llm:
        out = llm(prompt, max_tokens=n_tokens, temperature=0.0, top_k=1)
        return str(out["choices"][0]["text"])
