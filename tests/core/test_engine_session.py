"""LlamaSession on the real SmolLM2: a new context on the loaded model behaves as a fresh one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lwq_app.core.engine import LlamaSession
from lwq_app.core.errors import InputError, JobFailed


def _last_logits(s: LlamaSession, tokens: np.ndarray) -> np.ndarray:
    n = len(tokens)
    s.clear()
    s.decode(tokens, range(n), [0] * n, [False] * (n - 1) + [True])
    return s.logits(1)[0]


def test_new_context_keeps_the_model_and_matches_a_fresh_session(smollm2: Path) -> None:
    with LlamaSession(smollm2, n_ctx=64, threads=2) as fresh:
        tokens = fresh.tokenize("The quick brown fox jumps over the lazy dog. " * 8)
        assert len(tokens) > 64
        want = _last_logits(fresh, tokens[:48])
        with pytest.raises(JobFailed):  # longer than this context
            _last_logits(fresh, tokens)
        model = fresh.model_ptr
        fresh.new_context(256, n_batch=128)
        fresh.attach_threadpool()
        assert fresh.model_ptr == model and fresh.n_ctx_seq == 256 and fresh.n_batch == 128
        assert np.array_equal(_last_logits(fresh, tokens[:48]), want)
        assert np.isfinite(_last_logits(fresh, tokens[:100])).all()
        with pytest.raises(InputError, match="bad context size"):
            fresh.new_context(1)
