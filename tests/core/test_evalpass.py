"""The per-row scoring of perplexity/KLD passes, against float64 references."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lwq_app.core.evaluate.perplexity_child import batch_order, head_logits, score_rows
from lwq_app.core.jobs.errors import JobFailed


def _reference(xq: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q, b = xq.astype(np.float64), xb.astype(np.float64)
    lq = np.log(np.exp(q - q.max(1, keepdims=True)).sum(1)) + q.max(1)
    lb = np.log(np.exp(b - b.max(1, keepdims=True)).sum(1)) + b.max(1)
    pb = np.exp(b - lb[:, None])
    kld = (pb * ((b - lb[:, None]) - (q - lq[:, None]))).sum(1)
    return lq, lb, kld


@pytest.mark.parametrize("threads", [0, 2])
def test_fused_scores_match_a_float64_reference(threads: int) -> None:
    rng = np.random.default_rng(7)
    xb = (rng.normal(0, 4, size=(37, 5000))).astype(np.float32)
    xq = (xb + rng.normal(0, 0.05, size=xb.shape)).astype(np.float32)  # KLDs down to ~1e-4
    pool = ThreadPoolExecutor(threads) if threads else None
    sc = score_rows(xq, xb, pool)
    lq, lb, kld = _reference(xq, xb)
    assert sc.kld is not None and sc.lse_base is not None and sc.same_top is not None
    np.testing.assert_allclose(sc.lse, lq, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(sc.lse_base, lb, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(sc.kld, kld, rtol=1e-3)
    assert np.array_equal(sc.same_top, xq.argmax(1) == xb.argmax(1))
    alone = score_rows(xq, pool=pool)
    assert alone.kld is None and np.array_equal(alone.lse, sc.lse)


def test_recomputed_base_equals_given_logits() -> None:
    rng = np.random.default_rng(1)
    head = rng.normal(size=(3001, 64)).astype(np.float32)
    hidden = rng.normal(size=(20, 64)).astype(np.float16)
    xq = rng.normal(size=(20, 3001)).astype(np.float32)
    with ThreadPoolExecutor(2) as pool:
        xb = head_logits(hidden, head, pool)
        np.testing.assert_allclose(xb, hidden.astype(np.float32) @ head.T, rtol=1e-5, atol=1e-4)
        a = score_rows(xq, xb, pool)
        b = score_rows(xq, pool=pool, hidden=hidden, head=head)
    assert a.kld is not None and b.kld is not None
    np.testing.assert_allclose(a.kld, b.kld, rtol=1e-6)


def test_batch_order_undoes_a_permutation_and_refuses_a_mismatch() -> None:
    rng = np.random.default_rng(3)
    head = rng.normal(size=(900, 32)).astype(np.float32)
    hidden = rng.normal(size=(64, 32)).astype(np.float32)
    hidden[40] = hidden[7]  # a repeated passage: two identical rows
    logits = hidden @ head.T
    perm = rng.permutation(64)
    captured = hidden[perm]  # compute order differs from batch order
    order = batch_order(captured, logits, head)
    assert np.array_equal(captured[order], hidden)
    with pytest.raises(JobFailed, match="do not match"):
        batch_order(np.repeat(hidden[:1], 64, axis=0), logits, head)
