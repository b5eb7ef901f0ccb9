"""imatrix collection through cb_eval against llama-imatrix's own output (tests/golden)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lwq_app.core.importance.collection import (
    RESUME_SUFFIX,
    ImatrixRequest,
    collect_imatrix,
    coverage,
    merge_imatrices,
)
from lwq_app.core.jobs.errors import Cancelled, ImatrixError, InputError
from lwq_app.core.jobs.progress import CancelToken, Phase, Progress
from lwq_app.core.modelfile.imatrix_file import Imatrix, ImatrixEntry, read_imatrix, write_gguf
from lwq_app.core.modelfile.inventory import open_model

ROOT = Path(__file__).resolve().parents[2]


def _calibration(manifest: dict) -> tuple[str, Path]:
    rel = manifest["imatrix"]["text"]
    return rel, ROOT / rel


def _args(manifest: dict) -> dict[str, int]:
    a = manifest["imatrix"]["args"]
    return {
        "ctx": int(a[a.index("-c") + 1]),
        "chunks": int(a[a.index("--chunks") + 1]),
        "batch": int(a[a.index("-b") + 1]),
        "threads": int(a[a.index("-t") + 1]),
    }


@pytest.mark.slow
def test_matches_llama_imatrix_golden(
    smollm2: Path, golden_imatrix: Path, manifest: dict, tmp_path: Path
) -> None:
    rel, text = _calibration(manifest)
    out = tmp_path / "lwq.imatrix.gguf"
    events: list[Progress] = []
    request = ImatrixRequest(smollm2, text, out, dataset=rel, **_args(manifest))
    r = collect_imatrix(request, progress=events.append)
    gold = read_imatrix(golden_imatrix)
    mine = read_imatrix(out)
    assert set(mine.entries) == set(gold.entries)
    assert (mine.chunk_count, mine.chunk_size, mine.datasets) == (
        gold.chunk_count,
        gold.chunk_size,
        gold.datasets,
    )
    worst = 0.0
    for name, g in gold.entries.items():
        m = mine.entries[name]
        np.testing.assert_array_equal(m.counts, g.counts, err_msg=name)
        rel_err = float(np.max(np.abs(m.sums - g.sums)) / np.max(np.abs(g.sums)))
        worst = max(worst, rel_err)
        assert rel_err < 1e-3, f"{name}: relative error {rel_err:.2e}"
    print(f"max relative error vs llama-imatrix: {worst:.2e}")
    chunks = [p for p in events if p.phase is Phase.COLLECT]
    whole = [p.done for p in chunks if float(p.done).is_integer()]  # + fractional ones
    assert whole == list(range(1, gold.chunk_count + 1))
    assert events[-1].item == f"chunk {gold.chunk_count}"  # a label: no rate, no ETA
    positions = [p.position for p in events]
    assert positions == sorted(positions) and positions[-1] == 1.0
    assert r.coverage.never_seen == () and r.coverage.n_chunks == gold.chunk_count


def test_text_shorter_than_two_chunks(smollm2: Path, tmp_path: Path) -> None:
    text = tmp_path / "short.txt"
    text.write_text("far too short", encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.gguf"
    with pytest.raises(InputError, match="tokens"):
        collect_imatrix(ImatrixRequest(smollm2, text, out, ctx=512, threads=2))
    assert not out.exists()
    assert list(out_dir.iterdir()) == []


@pytest.mark.slow
def test_cancel_is_fast_and_leaves_nothing(smollm2: Path, manifest: dict, tmp_path: Path) -> None:
    _, text = _calibration(manifest)
    out = tmp_path / "c.gguf"
    cancel = CancelToken()
    started = threading.Event()
    stopped_at: list[float] = []

    def progress(p: Progress) -> None:
        started.set()

    def runner() -> None:
        try:
            request = ImatrixRequest(
                smollm2, text, out, ctx=128, chunks=40, batch=128, threads=2, save_every=0
            )
            collect_imatrix(request, progress=progress, cancel=cancel)
        except Cancelled:
            stopped_at.append(time.monotonic())

    th = threading.Thread(target=runner)
    th.start()
    assert started.wait(120)
    t0 = time.monotonic()
    cancel.cancel()
    th.join(10)
    assert stopped_at and stopped_at[0] - t0 < 1.0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_resume_after_cancel_equals_one_run(smollm2: Path, manifest: dict, tmp_path: Path) -> None:
    _, text = _calibration(manifest)
    kw = {"ctx": 128, "chunks": 4, "batch": 128, "threads": 2}
    whole = tmp_path / "whole.gguf"
    collect_imatrix(ImatrixRequest(smollm2, text, whole, **kw))

    out = tmp_path / "part.gguf"
    cancel = CancelToken()

    def progress(p: Progress) -> None:
        if p.phase is Phase.COLLECT and p.done >= 2:
            cancel.cancel()

    with pytest.raises(Cancelled):
        collect_imatrix(
            ImatrixRequest(smollm2, text, out, save_every=1, **kw), progress=progress, cancel=cancel
        )
    ckpt = Path(str(out) + RESUME_SUFFIX)
    assert not out.exists() and ckpt.exists()
    assert read_imatrix(ckpt).chunk_count >= 2
    with pytest.raises(InputError, match="checkpoint"):
        collect_imatrix(ImatrixRequest(smollm2, text, out, resume=True, **{**kw, "ctx": 256}))
    r = collect_imatrix(ImatrixRequest(smollm2, text, out, resume=True, **kw))
    assert r.chunks_this_run < 4 and r.n_chunks == 4 and not ckpt.exists()
    a, b = read_imatrix(whole), read_imatrix(out)
    for name, e in a.entries.items():
        np.testing.assert_array_equal(b.entries[name].counts, e.counts)
        np.testing.assert_allclose(b.entries[name].sums, e.sums, rtol=1e-5, err_msg=name)


def test_merge_like_llama_imatrix(golden_imatrix: Path, tmp_path: Path) -> None:
    gold = read_imatrix(golden_imatrix)
    merged = merge_imatrices([gold, gold])
    assert merged.chunk_count == 2 * gold.chunk_count
    assert merged.datasets == gold.datasets * 2
    for name, e in gold.entries.items():
        np.testing.assert_allclose(merged.entries[name].sums, 2 * e.sums, rtol=1e-6)
        np.testing.assert_array_equal(merged.entries[name].counts, 2 * e.counts)
    # a dense count broadcasts over experts, as llama.cpp's load_imatrix does
    dense = Imatrix({"x": ImatrixEntry("x", np.ones((2, 4), np.float32), np.array([3.0]))})
    moe = Imatrix({"x": ImatrixEntry("x", np.ones((2, 4), np.float32), np.array([1.0, 0.0]))})
    m = merge_imatrices([dense, moe], chunk_size=512)
    np.testing.assert_array_equal(m.entries["x"].counts, [4.0, 3.0])
    bad = Imatrix({"x": ImatrixEntry("x", np.ones((1, 5), np.float32), np.array([1.0]))})
    with pytest.raises(ImatrixError, match="x"):
        merge_imatrices([dense, bad])


def test_coverage_reports_missing_and_zero_experts(smollm2: Path, golden_imatrix: Path) -> None:
    model = open_model(smollm2)
    gold = read_imatrix(golden_imatrix)
    assert coverage(gold, model).never_seen == ()
    entries = dict(gold.entries)
    entries.pop("blk.3.ffn_up.weight")
    e = entries["blk.0.attn_q.weight"]
    entries["blk.0.attn_q.weight"] = ImatrixEntry(e.name, e.sums, np.zeros(1, np.float32))
    cov = coverage(Imatrix(entries, chunk_count=16, chunk_size=512), model)
    assert cov.never_seen == ("blk.3.ffn_up.weight",)
    assert cov.zero_count_experts == {"blk.0.attn_q.weight": (0,)}


def test_written_file_roundtrips_and_is_atomic(golden_imatrix: Path, tmp_path: Path) -> None:
    gold = read_imatrix(golden_imatrix)
    out = tmp_path / "rt.gguf"
    write_gguf(gold, out)
    back = read_imatrix(out)
    assert back.entries.keys() == gold.entries.keys() and back.chunk_count == gold.chunk_count
    assert [p.name for p in tmp_path.iterdir()] == ["rt.gguf"]
