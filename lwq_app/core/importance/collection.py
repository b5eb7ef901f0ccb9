"""The imatrix job: collect llama-imatrix-compatible importance data in a child process.

``collect_imatrix(ImatrixRequest(...))`` runs ``engine.graph.collect_activations`` out of
process (cancel = kill), reporting ``Phase.LOAD`` then ``Phase.COLLECT``: one event per
finished chunk (item ``"chunk N"``, ``done`` whole) and, while a decode runs, fractional ones
as its layers are collected (one chunk takes seconds on a large model). Every ``save_every`` chunks the child writes a checkpoint
``OUT.resume.gguf`` (plus a small JSON naming the text, context and model it belongs to), so
``resume=True`` continues a long run after a crash or cancel; the output itself is only ever
written whole (temp file + rename).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.atomic import atomic_write_text, check_writable_dir
from ..jobs.boundary import public_job
from ..jobs.child_runner import ChildContext, run_in_child
from ..jobs.errors import ImatrixError, InputError, OutputError
from ..jobs.progress import CancelToken, Phase, Phases, Progress, ProgressSink, check, no_progress
from ..modelfile.hashing import sha256_text
from ..modelfile.imatrix_file import Imatrix, ImatrixEntry, read_imatrix, write_gguf, write_imatrix
from ..modelfile.inventory import ModelInfo, open_model

RESUME_SUFFIX = ".resume.gguf"
RESUME_META_SUFFIX = ".resume.json"
#: seconds between progress events sent while one decode runs
PARTIAL_INTERVAL = 0.25


@dataclass(frozen=True)
class Coverage:
    """What the calibration run reached: chunks, tensors never seen, experts never routed to."""

    n_chunks: int
    chunk_size: int
    n_entries: int
    never_seen: tuple[str, ...]
    #: tensor -> the experts that saw no token (read-only)
    zero_count_experts: Mapping[str, tuple[int, ...]]

    def to_dict(self) -> dict[str, Any]:
        """The ``coverage`` object of ``lwq imatrix --json``."""
        return {
            "chunks": self.n_chunks,
            "chunk_size": self.chunk_size,
            "entries": self.n_entries,
            "never_seen": list(self.never_seen),
            "zero_count_experts": {k: list(v) for k, v in self.zero_count_experts.items()},
        }


@dataclass(frozen=True)
class ImatrixRequest:
    """Collect an importance matrix of ``model`` over the text in ``text_file`` into ``output``.

    Same chunking and statistics as ``llama-imatrix -c ctx --chunks chunks -b batch``
    (``chunks`` -1: the whole text); ``merge_with`` adds earlier imatrix files; ``resume``
    continues from ``OUT.resume.gguf``, written every ``save_every`` chunks (0: never).
    ``dataset`` is the name recorded in the file (default: ``text_file`` as given).
    """

    model: Path
    text_file: Path
    output: Path
    ctx: int = 512
    chunks: int = -1
    batch: int = 512
    threads: int = 0
    gpu_layers: int = 0
    process_output: bool = False
    resume: bool = False
    save_every: int = 10
    merge_with: tuple[Path, ...] = ()
    dataset: str | None = None


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
    cctx.progress(Progress(Phase.LOAD, 0, 1, Path(model_path).name))
    from ..engine.graph import collect_activations

    def merged(stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> Imatrix:
        run = _to_imatrix(stats, datasets, ctx)
        return run if base is None else merge_imatrices([base, run], ctx)

    def on_chunk(done: int, total: int, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        ran = done - skip_chunks
        if checkpoint and save_every > 0 and done < total and ran % save_every == 0:
            write_gguf(merged(stats), checkpoint)  # before the report: it is then on disk
        cctx.progress(Progress(Phase.COLLECT, done, total, f"chunk {done}"))

    last = [time.monotonic()]

    def on_partial(done: float, total: int) -> None:
        # inside a decode (seconds per chunk on a large model): at most 4 events a second
        now = time.monotonic()
        if now - last[0] >= PARTIAL_INTERVAL:
            last[0] = now
            cctx.progress(Progress(Phase.COLLECT, done, total, f"chunk {int(done) + 1}"))

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
        on_partial=on_partial,
    )
    return r.stats, r.n_chunks, r.n_tokens_text


def _validate(request: ImatrixRequest, model: ModelInfo) -> None:
    r = request
    for name, value, least in (
        ("ctx", r.ctx, 1),
        ("batch", r.batch, 1),
        ("save_every", r.save_every, 0),
    ):
        if value < least:
            raise InputError(f"--{name.replace('_', '-')} {value}: must be at least {least}")
    if r.chunks == 0 or r.chunks < -1:
        raise InputError(f"--chunks {r.chunks}: must be positive (or -1 for the whole text)")
    out = Path(r.output)
    if out.resolve() in {p.resolve() for p in model.paths}:
        raise OutputError(f"{out}: output would overwrite the input model")
    check_writable_dir(out)


@public_job("imatrix")
def collect_imatrix(
    request: ImatrixRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> ImatrixResult:
    """Collect an importance matrix and write it to ``request.output`` (GGUF or .dat)."""
    check(cancel)
    t0 = time.monotonic()
    r = request
    model = open_model(r.model)
    text = read_text_file(r.text_file)
    _validate(r, model)
    out = Path(r.output)
    ckpt = Path(str(out) + RESUME_SUFFIX)
    meta_path = Path(str(out) + RESUME_META_SUFFIX)
    meta = {
        "model": model.fingerprint(),
        "text_sha256": sha256_text(text),
        "ctx": r.ctx,
        "batch": r.batch,
        "chunks": r.chunks,
        "process_output": r.process_output,
    }
    bases: list[Imatrix] = []
    for p in r.merge_with:
        im = read_imatrix(p)
        im.check_model(model)
        bases.append(im)
    skip = 0
    resumed: Imatrix | None = None
    if r.resume and ckpt.is_file():
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
    check(cancel)
    # llama.cpp always names one dataset; an empty array reads as missing
    datasets = (r.dataset if r.dataset is not None else str(r.text_file)) or "text"
    phases = Phases(progress, [(Phase.LOAD, 1), (Phase.COLLECT, 9)])
    sinks = {ph: phases.sink(ph) for ph in (Phase.LOAD, Phase.COLLECT)}
    atomic_write_text(meta_path, json.dumps(meta))
    try:
        stats, n_run, n_tokens = run_in_child(
            "lwq_app.core.importance.collection:_child_collect",
            {
                "model_path": str(model.path),
                "text": text,
                "ctx": r.ctx,
                "chunks": r.chunks,
                "batch": r.batch,
                "threads": r.threads,
                "gpu_layers": r.gpu_layers,
                "process_output": r.process_output,
                "skip_chunks": skip,
                "base": resumed,
                "datasets": (datasets,),
                "checkpoint": str(ckpt),
                "save_every": r.save_every,
            },
            progress=lambda p: sinks[p.phase](p),
            cancel=cancel,
            job="imatrix",
            subject=model.path,
        )
    except BaseException:
        if not ckpt.is_file():
            meta_path.unlink(missing_ok=True)
        raise
    im = _to_imatrix(stats, (datasets,), r.ctx)
    parts = bases + ([resumed] if resumed is not None else []) + [im]
    final = merge_imatrices(parts, r.ctx) if len(parts) > 1 else im
    if resumed is not None:
        final = Imatrix(
            final.entries, tuple(dict.fromkeys(final.datasets)), final.chunk_count, r.ctx
        )
    write_imatrix(final, out)
    for p in (ckpt, meta_path):
        p.unlink(missing_ok=True)
    return ImatrixResult(
        out,
        final.chunk_count,
        n_run,
        n_tokens,
        time.monotonic() - t0,
        coverage(final, model, r.process_output),
    )
