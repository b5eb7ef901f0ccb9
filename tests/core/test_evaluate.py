"""Perplexity and KL-divergence against llama-perplexity's golden logs (SmolLM2, 20 × 512)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

import fixtures
from lwq_app.core.evaluate import perplexity as ev
from lwq_app.core.evaluate.kld_stats import (
    format_kld_report,
    kld_stats,
    mean_and_uncertainty,
    percentile,
)
from lwq_app.core.evaluate.logit_cache import (
    BaseLogits,
    CacheKey,
    load_base_logits,
    read_key,
    save_base_logits,
)
from lwq_app.core.evaluate.perplexity_child import read_eval_text
from lwq_app.core.jobs.errors import Cancelled, InputError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.modelfile.inventory import open_model
from lwq_app.core.plan.quant_plan import plan_from_preset
from lwq_app.core.plan.quantize import QuantizeRequest, quantize

WIKI = fixtures.WIKI
NUM = r"(-?[0-9.]+)"


def golden_stats(log: str) -> dict[str, float]:
    """The statistics block of a llama-perplexity --kl-divergence log, as name -> value."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        m = re.match(r"^(Mean PPL\(Q\)|Mean PPL\(base\)|Mean ln\(PPL\(Q\)/PPL\(base\)\)|"
                     r"Mean PPL\(Q\)/PPL\(base\))\s*:\s*" + NUM + r"\s*±\s*" + NUM, line)  # fmt: skip
        if m:
            out[m[1]], out[m[1] + " unc"] = float(m[2]), float(m[3])
        m = re.match(
            r"^(Mean    KLD|Mean    Δp|RMS Δp    |Same top p):\s*" + NUM + r"\s*±\s*" + NUM, line
        )
        if m:
            out[m[1].strip()], out[m[1].strip() + " unc"] = float(m[2]), float(m[3])
        m = re.match(r"^\s*([0-9.]+)%\s+(KLD|Δp):\s*" + NUM, line)
        if m:
            out[f"{m[2]} {float(m[1]):.1f}"] = float(m[3])
        m = re.match(r"^Median\s+(KLD|Δp):\s*" + NUM, line)
        if m:
            out[f"{m[1]} median"] = float(m[2])
        m = re.match(r"^Cor\(ln\(PPL\(Q\)\), ln\(PPL\(base\)\)\):\s*" + NUM, line)
        if m:
            out["cor"] = float(m[1]) / 100
    return out


# --- fast unit tests -------------------------------------------------------------------------


def test_uncertainty_and_percentile_follow_llama_cpp() -> None:
    assert mean_and_uncertainty(10.0, 30.0, 10) == (1.0, 0.0)  # ≤ 10 values: no uncertainty
    v = np.arange(11, dtype=np.float32)
    assert percentile(v, 0.5) == 5.0 and percentile(v, 0.999) == pytest.approx(9.99, abs=1e-4)
    rng = np.random.default_rng(0)
    n = 1000
    nll = rng.uniform(1, 5, n)
    s = kld_stats(
        nll, nll - 0.1, rng.uniform(0, 1, n), rng.normal(0, 0.1, n), rng.uniform(size=n) < 0.8
    )
    assert s.ratio == pytest.approx(np.exp(0.1)) and s.cor == pytest.approx(1.0)
    assert s.same_top_unc == pytest.approx(np.sqrt(s.same_top * (1 - s.same_top) / (n - 1)))
    assert "Same top p:" in format_kld_report(s)


def test_text_is_read_like_llama_perplexity(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_bytes(b"a\r\nb\n")
    assert read_eval_text(p) == b"a\r\nb"  # bytes kept (CRLF), one final newline dropped


def test_bad_cache_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"bad\.npz"):
        load_base_logits(bad)
    with pytest.raises(InputError, match="no such"):
        load_base_logits(tmp_path / "missing.npz")


# --- end to end on SmolLM2 --------------------------------------------------------------------


@pytest.fixture(scope="module")
def q4_k_m(smollm2: Path, golden_imatrix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("q4km") / "smollm2-Q4_K_M.gguf"
    plan = plan_from_preset(open_model(smollm2), "Q4_K_M", with_imatrix=True)
    quantize(QuantizeRequest(smollm2, plan, out, imatrix=golden_imatrix, threads=2))
    return out


@pytest.fixture(scope="module")
def base_cache(
    smollm2: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ev.PerplexityResult]:
    out = tmp_path_factory.mktemp("base") / "base.npz"
    r = ev.perplexity(
        smollm2, WIKI, n_ctx=512, n_chunks=20, n_seq=1, threads=2, base_logits_out=out
    )
    return out, r


@pytest.mark.slow
def test_perplexity_matches_llama_perplexity(
    base_cache: tuple[Path, ev.PerplexityResult], golden_dir: Path
) -> None:
    log = (golden_dir / "perplexity-f16.log").read_text()
    want = float(re.search(r"Final estimate: PPL = " + NUM, log)[1])  # type: ignore[index]
    unc = float(re.search(r"PPL = [0-9.]+ \+/- " + NUM, log)[1])  # type: ignore[index]
    running = [float(x) for x in re.findall(r"\[\d+\]" + NUM, log)]
    r = base_cache[1]
    assert r.n_chunks == 20 and r.count == 20 * 255
    assert r.ppl == pytest.approx(want, rel=1e-3)
    assert r.ppl_unc == pytest.approx(unc, rel=1e-2)
    assert np.allclose(r.chunk_ppl, running, rtol=1e-3)


@pytest.mark.slow
def test_kld_matches_llama_perplexity_with_compact_cache(
    base_cache: tuple[Path, ev.PerplexityResult], q4_k_m: Path, golden_dir: Path
) -> None:
    golden = golden_dir / f"perplexity-q4_k_m-kld.{fixtures.cpu_class()}.log"
    if not golden.exists():
        pytest.skip(f"no llama-perplexity golden for {golden.name}: make_golden.py writes it")
    g = golden_stats(golden.read_text())
    r = ev.kl_divergence(q4_k_m, WIKI, base_cache[0], n_seq=1, threads=2)
    s = r.stats
    assert s.count == 20 * 255
    assert s.ppl == pytest.approx(g["Mean PPL(Q)"], rel=1e-3)
    assert s.kld == pytest.approx(g["Mean    KLD"], rel=5e-3)
    # llama.cpp's base log-probs are rounded to 16 bits; ours are exact: within the ± printed
    assert abs(s.ppl_base - g["Mean PPL(base)"]) < g["Mean PPL(base) unc"]
    assert abs(s.ratio - g["Mean PPL(Q)/PPL(base)"]) < g["Mean PPL(Q)/PPL(base) unc"]
    assert abs(s.ln_ratio - g["Mean ln(PPL(Q)/PPL(base))"]) < g["Mean ln(PPL(Q)/PPL(base)) unc"]
    assert abs(s.kld_unc - g["Mean    KLD unc"]) < 0.05 * g["Mean    KLD unc"]
    assert abs(100 * s.dp - g["Mean    Δp"]) < g["Mean    Δp unc"]
    assert abs(100 * s.rms_dp - g["RMS Δp"]) < g["RMS Δp unc"]
    assert abs(100 * s.same_top - g["Same top p"]) < g["Same top p unc"]
    assert s.cor == pytest.approx(g["cor"], abs=0.005)
    for q in ("99.0", "95.0", "90.0", "10.0", "5.0"):
        assert s.kld_dist.at(q) == pytest.approx(g[f"KLD {q}"], rel=0.02), q
    for q in ("99.0", "95.0", "90.0", "75.0", "25.0", "10.0", "5.0", "1.0"):
        assert 100 * s.dp_dist.at(q) == pytest.approx(g[f"Δp {q}"], abs=0.01), q
    assert s.kld_dist.median == pytest.approx(g["KLD median"], rel=0.01)
    key = read_key(base_cache[0])
    assert (key.n_ctx, key.n_chunks, key.n_vocab) == (512, 20, 49152)
    assert r.cache_bytes_per_token < 0.15 * 2 * (49152 + 4)  # head included; llama.cpp: 98 kB


@pytest.mark.slow
def test_compact_cache_kld_equals_full_logit_kld(smollm2: Path, q4_k_m: Path) -> None:
    exact, compact = ev.compare_exact(
        q4_k_m, smollm2, WIKI, n_ctx=512, n_chunks=3, n_seq=1, threads=2
    )
    assert compact.kld == pytest.approx(exact.kld, rel=5e-3)
    assert compact.same_top == pytest.approx(exact.same_top, abs=1e-3)


def test_full_logprob_cache_agrees_with_the_compact_one(
    smollm2: Path, q4_k_m: Path, tmp_path: Path
) -> None:
    """The fallback form (every log-prob in 16 bits, for output heads lwq cannot recompute)
    gives the same KLD statistics as the compact hidden-state form."""
    kw = {"n_ctx": 256, "n_chunks": 2, "threads": 2}
    compact, full = tmp_path / "compact.npz", tmp_path / "full.npz"
    ev.perplexity(smollm2, WIKI, base_logits_out=compact, **kw)
    ev.perplexity(smollm2, WIKI, base_logits_out=full, full_logits=True, **kw)
    assert not load_base_logits(compact).is_full and load_base_logits(full).is_full
    assert full.stat().st_size >= 2 * 49152 * 2 * 127  # 2 bytes per vocab entry and token
    a = ev.kl_divergence(q4_k_m, WIKI, compact, **kw)
    b = ev.kl_divergence(q4_k_m, WIKI, full, **kw)
    assert b.stats.kld == pytest.approx(a.stats.kld, rel=5e-3)
    assert b.stats.same_top == pytest.approx(a.stats.same_top, abs=1e-3)
    assert b.perplexity.ppl == a.perplexity.ppl


@pytest.mark.slow
def test_cache_is_reused_and_never_for_other_inputs(
    smollm2: Path, q4_k_m: Path, tmp_path: Path
) -> None:
    text = tmp_path / "t.txt"
    text.write_bytes(WIKI.read_bytes()[:60_000])
    cache_dir = tmp_path / "cache"
    kw = {"n_ctx": 128, "n_chunks": 2, "threads": 2, "cache_dir": cache_dir}
    path, secs = ev.cached_base_logits(smollm2, text, **kw)  # type: ignore[arg-type]
    assert secs > 0 and path.exists()
    again, secs2 = ev.cached_base_logits(smollm2, text, **kw)  # type: ignore[arg-type]
    assert again == path and secs2 == 0.0
    other = {**kw, "n_ctx": 256}
    p256, _ = ev.cached_base_logits(smollm2, text, **other)  # type: ignore[arg-type]
    assert p256 != path
    r = ev.evaluate(ev.EvalRequest(q4_k_m, text, base_logits=path, n_ctx=128, threads=2))
    assert isinstance(r, ev.KldResult) and r.stats.count == 2 * 63
    with pytest.raises(InputError, match="context size"):
        ev.kl_divergence(q4_k_m, text, path, n_ctx=256, threads=2)
    changed = tmp_path / "t2.txt"
    changed.write_bytes(text.read_bytes() + b" more")
    with pytest.raises(InputError, match="text"):
        ev.kl_divergence(q4_k_m, changed, path, n_ctx=128, threads=2)
    bl = load_base_logits(path)
    k = bl.key
    alien = tmp_path / "alien.npz"
    save_base_logits(
        alien,
        BaseLogits(
            CacheKey(k.model_hash, k.text_sha256, 128, 2, 32000),
            bl.tokens,
            bl.hidden,
            bl.tok_lp,
            bl.head[:32000],
        ),
    )
    with pytest.raises(InputError, match="vocab"):
        ev.kl_divergence(q4_k_m, text, alien, n_ctx=128, threads=2)


@pytest.mark.slow
def test_short_text_is_refused(smollm2: Path, tmp_path: Path) -> None:
    text = tmp_path / "short.txt"
    text.write_text("Just a few words.\n")
    with pytest.raises(
        InputError, match=r"short.txt: text is too short: \d+ tokens, at least 1024"
    ):
        ev.perplexity(smollm2, text, n_ctx=512, threads=2)


@pytest.mark.slow
def test_cancel_stops_fast_and_leaves_no_file(smollm2: Path, tmp_path: Path) -> None:
    token = CancelToken()
    when: list[float] = []

    def on_progress(p: Progress) -> None:
        if p.phase == Phase.EVAL and not token.cancelled:
            when.append(time.monotonic())
            token.cancel()

    out = tmp_path / "base.npz"
    with pytest.raises(Cancelled):
        ev.perplexity(smollm2, WIKI, n_ctx=512, n_chunks=20, threads=2, base_logits_out=out,
                      progress=on_progress, cancel=token)  # fmt: skip
    assert time.monotonic() - when[0] < 1.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_progress_reports_every_chunk_by_label(smollm2: Path, tmp_path: Path) -> None:
    events: list[Progress] = []
    ev.perplexity(smollm2, WIKI, n_ctx=128, n_chunks=3, n_seq=2, threads=2, progress=events.append)
    evals = [e for e in events if e.phase == Phase.EVAL]
    assert [e.done for e in evals] == [0, 2, 3] and all(e.total == 3 for e in evals)
    assert [e.item for e in evals[1:]] == ["chunk 2", "chunk 3"]  # labels: no rate, no ETA
    assert not any("ETA" in e.item or "s/chunk" in e.item for e in events)
