"""The imatrix job: collect llama-imatrix-compatible importance data in a child process.

Collection runs ``engine.graph.collect_activations`` out of process (cancel = kill). Every
``save_every`` chunks the child writes a checkpoint ``OUT.resume.gguf`` (plus a small JSON
naming the text, context and model it belongs to), so ``resume=True`` continues a long run
after a crash or cancel; the output itself is only ever written whole (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .childproc import ChildContext, run_in_child
from .errors import ImatrixError, InputError
from .fileio import atomic_write_text
from .imatrix import Imatrix, ImatrixEntry, read_imatrix, write_gguf, write_imatrix
from .model import ModelInfo, open_model
from .progress import CancelToken, Progress, ProgressSink, Stage

RESUME_SUFFIX = ".resume.gguf"
RESUME_META_SUFFIX = ".resume.json"


@dataclass(frozen=True)
class Coverage:
    """What the calibration run reached: chunks, tensors never seen, experts never routed to."""

    n_chunks: int
    chunk_size: int
    n_entries: int
    never_seen: tuple[str, ...]
    zero_count_experts: dict[str, tuple[int, ...]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.n_chunks,
            "chunk_size": self.chunk_size,
            "entries": self.n_entries,
            "never_seen": list(self.never_seen),
            "zero_count_experts": {k: list(v) for k, v in self.zero_count_experts.items()},
        }


@dataclass(frozen=True)
class ImatrixResult:
    output: Path
    n_chunks: int
    chunks_this_run: int
    n_tokens: int
    seconds: float
    coverage: Coverage


def coverage(im: Imatrix, model: ModelInfo, process_output: bool = False) -> Coverage:
    """Which tensors llama-imatrix would collect got no data, and which experts saw no token."""
    expected = [
        t.name
        for t in model.tensors
        if t.quantizable
        and len(t.shape) >= 2
        and (t.name.startswith("blk.") or (process_output and t.name == "output.weight"))
        and not t.name.endswith("ffn_gate_inp.weight")
    ]
    never = tuple(sorted(n for n in expected if n not in im.entries))
    zeros = {n: tuple(v) for n, v in im.zero_count_experts().items()}
    return Coverage(im.chunk_count, im.chunk_size, len(im.entries), never, zeros)


def merge_imatrices(items: Sequence[Imatrix], chunk_size: int = 0) -> Imatrix:
    """Sum several imatrix runs as ``llama-imatrix --in-file a --in-file b`` does.

    Legacy ``.dat`` inputs hold mean × ncall; like llama.cpp they are scaled back by the
    chunk size. A dense count broadcasts over experts when merged with per-expert data.
    """
    if not items:
        raise InputError("nothing to merge")
    cs = chunk_size or next((i.chunk_size for i in items if i.chunk_size), 512)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    datasets: list[str] = []
    for im in items:
        for name, e in im.entries.items():
            s = e.sums.astype(np.float64).reshape(-1)
            c = e.counts.astype(np.float64)
            if im.is_legacy:
                s, c = s * cs, c[:1] * cs
            if name not in sums:
                sums[name] = np.zeros_like(s)
                counts[name] = np.zeros_like(c)
            if sums[name].size != s.size:
                raise ImatrixError(
                    f"{im.source}: entry {name} has {s.size} values, earlier input {sums[name].size}"
                )
            if counts[name].size == 1 and c.size > 1:
                counts[name] = np.full(c.size, counts[name][0])
            elif c.size == 1 and counts[name].size > 1:
                c = np.full(counts[name].size, c[0])
            elif c.size != counts[name].size:
                raise ImatrixError(f"{im.source}: entry {name}: expert count differs")
            sums[name] += s
            counts[name] += c
        datasets.extend(im.datasets)
    entries = {}
    for name, s in sums.items():
        c = counts[name]
        entries[name] = ImatrixEntry(
            name, s.reshape(c.size, -1).astype(np.float32), c.astype(np.float32)
        )
    max_count = max((float(c.max()) for c in counts.values()), default=0.0)
    return Imatrix(entries, tuple(datasets), int(max_count // cs), cs)


def _to_imatrix(
    stats: dict[str, tuple[np.ndarray, np.ndarray]], datasets: Sequence[str], chunk_size: int
) -> Imatrix:
    entries = {
        n: ImatrixEntry(n, s.astype(np.float32), c.astype(np.float32))
        for n, (s, c) in stats.items()
    }
    max_count = max((int(c.max()) for _, c in stats.values()), default=0)
    return Imatrix(entries, tuple(datasets), max_count // max(1, chunk_size), chunk_size)


def read_text_file(path: str | Path) -> str:
    """A calibration text as ``llama-imatrix -f`` reads it (one trailing newline dropped)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"{path}: cannot read calibration text: {e.strerror}") from None
    return text[:-1] if text.endswith("\n") else text


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _child_collect(
    cctx: ChildContext,
    model_path: str,
    text: str,
    ctx: int,
    chunks: int,
    batch: int,
    threads: int,
    gpu_layers: int,
    process_output: bool,
    skip_chunks: int,
    base: Imatrix | None,
    datasets: tuple[str, ...],
    checkpoint: str | None,
    save_every: int,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int, int]:
    from .engine.graph import collect_activations

    t0 = time.monotonic()

    def merged(stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> Imatrix:
        run = _to_imatrix(stats, datasets, ctx)
        return run if base is None else merge_imatrices([base, run], ctx)

    def on_chunk(done: int, total: int, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        ran = done - skip_chunks
        el = time.monotonic() - t0
        eta = el / ran * (total - done) if ran else 0.0
        if checkpoint and save_every > 0 and done < total and ran % save_every == 0:
            write_gguf(merged(stats), checkpoint)  # before the report: it is then on disk
        cctx.progress(Progress(Stage.EVAL, done, total, f"chunk {done}/{total}, ETA {eta:.0f}s"))

    r = collect_activations(
        model_path,
        text,
        n_ctx=ctx,
        n_chunks=chunks,
        n_batch=batch,
        threads=threads,
        gpu_layers=gpu_layers,
        process_output=process_output,
        skip_chunks=skip_chunks,
        on_chunk=on_chunk,
    )
    return r.stats, r.n_chunks, r.n_tokens_text


def collect_imatrix(
    model_path: str | Path,
    text: str,
    output: str | Path,
    *,
    ctx: int = 512,
    chunks: int = -1,
    batch: int = 512,
    threads: int = 0,
    gpu_layers: int = 0,
    process_output: bool = False,
    dataset: str = "",
    resume: bool = False,
    save_every: int = 10,
    merge_with: Sequence[str | Path] = (),
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> ImatrixResult:
    """Collect an importance matrix over ``text`` and write it to ``output`` (GGUF or .dat).

    Same chunking and statistics as ``llama-imatrix -c ctx --chunks chunks -b batch``;
    ``merge_with`` adds earlier imatrix files; ``resume`` continues from ``OUT.resume.gguf``.
    """
    t0 = time.monotonic()
    model = open_model(model_path)
    out = Path(output)
    ckpt = Path(str(out) + RESUME_SUFFIX)
    meta_path = Path(str(out) + RESUME_META_SUFFIX)
    meta = {
        "model": model.fingerprint(),
        "text_sha256": _text_hash(text),
        "ctx": ctx,
        "batch": batch,
        "chunks": chunks,
        "process_output": process_output,
    }
    bases: list[Imatrix] = []
    for p in merge_with:
        im = read_imatrix(p)
        im.check_model(model)
        bases.append(im)
    skip = 0
    resumed: Imatrix | None = None
    if resume and ckpt.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            old = None
        if old != meta:
            raise InputError(
                f"{ckpt}: checkpoint was made with another model, text or settings; "
                "delete it or run without --resume"
            )
        resumed = read_imatrix(ckpt)
        skip = resumed.chunk_count
    datasets = (dataset or "text",)  # llama.cpp always names one; an empty array reads as missing
    atomic_write_text(meta_path, json.dumps(meta))
    try:
        stats, n_run, n_tokens = run_in_child(
            "lwq_app.core.importance:_child_collect",
            {
                "model_path": str(model.path),
                "text": text,
                "ctx": ctx,
                "chunks": chunks,
                "batch": batch,
                "threads": threads,
                "gpu_layers": gpu_layers,
                "process_output": process_output,
                "skip_chunks": skip,
                "base": resumed,
                "datasets": datasets,
                "checkpoint": str(ckpt),
                "save_every": save_every,
            },
            progress=progress,
            cancel=cancel,
        )
    except BaseException:
        if not ckpt.is_file():
            meta_path.unlink(missing_ok=True)
        raise
    im = _to_imatrix(stats, datasets, ctx)
    parts = bases + ([resumed] if resumed is not None else []) + [im]
    final = merge_imatrices(parts, ctx) if len(parts) > 1 else im
    if resumed is not None:
        final = Imatrix(final.entries, tuple(dict.fromkeys(final.datasets)), final.chunk_count, ctx)
    write_imatrix(final, out)
    for p in (ckpt, meta_path):
        p.unlink(missing_ok=True)
    return ImatrixResult(
        out,
        final.chunk_count,
        n_run,
        n_tokens,
        time.monotonic() - t0,
        coverage(final, model, process_output),
    )
