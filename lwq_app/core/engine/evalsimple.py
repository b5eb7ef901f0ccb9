"""Model loading and simple evaluation helpers (the evaluation issue brings the full evaluator)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

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


def perplexity(
    path: str, text: str, n_ctx: int = 256, max_chunks: int = 4, threads: int = 0
) -> float:
    """Perplexity over non-overlapping ``n_ctx`` windows, scoring each window's second half.

    This is llama-perplexity's scheme (BOS first, first half as context); the evaluation
    issue replaces it with the batched, cancellable evaluator.
    """
    with loaded_model(path, n_ctx, threads) as llm:
        tokens = llm.tokenize(text.encode(), add_bos=False)
        bos = llm.token_bos()
        nll, count = 0.0, 0
        n_chunks = min(max_chunks, len(tokens) // n_ctx)
        if n_chunks < 1:
            raise ValueError(f"text has {len(tokens)} tokens, fewer than one chunk of {n_ctx}")
        for c in range(n_chunks):
            chunk = list(tokens[c * n_ctx : (c + 1) * n_ctx])
            chunk[0] = bos
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[: len(chunk)], dtype=np.float64)
            first = n_ctx // 2
            for j in range(first, n_ctx - 1):
                row = logits[j]
                mx = row.max()
                lse = mx + math.log(np.exp(row - mx).sum())
                nll += lse - row[chunk[j + 1]]
                count += 1
        return math.exp(nll / count)


def greedy_completion(path: str, prompt: str, n_tokens: int = 24, threads: int = 0) -> str:
    with loaded_model(path, 256, threads, logits_all=False) as llm:
        out = llm(prompt, max_tokens=n_tokens, temperature=0.0, top_k=1)
        return str(out["choices"][0]["text"])
