"""LlamaSession on the real SmolLM2: a new context on the loaded model behaves as a fresh one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lwq_app.core.engine import LlamaSession
from lwq_app.core.jobs.errors import InputError, JobFailed


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


def test_every_prototype_resolves_in_its_library() -> None:
    """engine/prototypes.py: each declared function exists in the library named for it (found
    by llama_cpp's own loader, so with this platform's file names)."""
    from lwq_app.core.engine.prototypes import GGML, PROTOTYPES, library

    for name, (lib, restype, argtypes) in PROTOTYPES.items():
        assert hasattr(library(lib), name), f"{name} not in {lib}"
        fn = getattr(GGML, name)
        assert fn.restype is restype and list(fn.argtypes) == argtypes
    with pytest.raises(AttributeError, match="no prototype"):
        _ = GGML.ggml_no_such_function


def test_backend_lists_agree() -> None:
    from lwq_app.core.engine.common import backend_device_list, backend_devices

    devices = backend_device_list()
    assert any(d[0] == "CPU" and d[3] == 0 for d in devices)  # GGML_BACKEND_DEVICE_TYPE_CPU
    backends, gpus = backend_devices()
    assert gpus == ", ".join(d[1] for d in devices if d[3] in (1, 2))
    assert "CPU" not in backends.split(",") or backends == "CPU"
