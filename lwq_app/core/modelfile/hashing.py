"""Every SHA-256 lwq takes: of files and texts (``sha256_file``, ``sha256_text``), of a
model's tensor data (``tensor_data_hash``, ``per_tensor_hashes``), and the model-hash job with
the index that spares re-hashing models (``hash_model``, ``model_hash``,
``record_model_hash``).

Hashing a model reads all of its tensor data (minutes for a large one): every reader here
works in ``CHUNK`` steps, reports ``Phase.HASH`` progress in bytes (item: the tensor) and
checks cancel between steps. ``model_hash`` keeps the hashes in ``model-hashes.json`` in the
data folder, keyed by the resolved path and valid while every shard keeps its size and mtime.
That index is only a cache: unreadable, it is rebuilt; unwritable, hashes are simply computed
again; a cancelled hash writes nothing.

This module reads headers itself (``gguf_header``), so that the inventory can build on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from ..jobs.atomic import atomic_write_text
from ..jobs.errors import InputError, LwqError, ModelFileError
from ..jobs.paths import data_dir
from ..jobs.progress import CancelToken, Phase, Progress, ProgressSink, check, no_progress
from .gguf_header import llama_order_key, read_header, split_paths

#: bytes read per step when hashing: one progress event and one cancel check each
CHUNK = 16 << 20


def sha256_file(
    path: str | Path,
    *,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
    item: str = "",
) -> str:
    """The file's SHA-256, read in ``CHUNK`` steps (``Phase.HASH`` events in bytes, cancel
    checked between steps). A missing or unreadable file is an ``InputError`` naming it."""
    p = Path(path)
    try:
        total = p.stat().st_size
        h = hashlib.sha256()
        done = 0
        with open(p, "rb") as f:
            if progress is not None:
                progress(Progress(Phase.HASH, 0, total, item or p.name))
            while b := f.read(CHUNK):
                check(cancel)
                h.update(b)
                done += len(b)
                if progress is not None:
                    progress(Progress(Phase.HASH, done, total, item or p.name))
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    return h.hexdigest()


def sha256_text(text: str | bytes) -> str:
    """SHA-256 of a text (UTF-8) or of bytes."""
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


# --- tensor data ------------------------------------------------------------------------------


class TensorSlot(Protocol):
    """Where one tensor's data lies: what the hashers need of a ``TensorInfo``."""

    @property
    def name(self) -> str: ...
    @property
    def file_index(self) -> int: ...
    @property
    def data_offset(self) -> int: ...
    @property
    def n_bytes(self) -> int: ...


class TensorLayout(Protocol):
    """A model's shards and tensor slots: what the hashers need of a ``ModelInfo``."""

    @property
    def paths(self) -> tuple[Path, ...]: ...
    @property
    def tensors(self) -> Sequence[TensorSlot]: ...


class _Slot(NamedTuple):
    name: str
    file_index: int
    data_offset: int
    n_bytes: int


@dataclass(frozen=True)
class _Layout:
    paths: tuple[Path, ...]
    tensors: tuple[_Slot, ...]


def _layout(model: str | Path | TensorLayout) -> TensorLayout:
    """``model`` itself if opened already, else its shards' headers (errors name the file)."""
    if not isinstance(model, str | Path):
        return model
    paths = split_paths(Path(model))
    slots = [
        _Slot(rt.name, i, rt.data_offset, rt.n_bytes)
        for i, p in enumerate(paths)
        for rt in read_header(p, allow_no_tensors=len(paths) > 1).tensors
    ]
    return _Layout(paths, tuple(slots))


def _tensor_chunks(
    layout: TensorLayout,
    slots: Sequence[TensorSlot],
    progress: ProgressSink | None,
    cancel: CancelToken | None,
) -> Iterator[tuple[TensorSlot, bytes]]:
    """Each tensor's data in ``CHUNK`` pieces, in ``slots`` order, with progress and cancel."""
    total = sum(t.n_bytes for t in slots)
    done = 0
    if progress is not None:
        progress(Progress(Phase.HASH, 0, total, slots[0].name if slots else ""))
    try:
        handles = [p.open("rb") for p in layout.paths]
    except OSError as e:
        raise ModelFileError(f"{e.filename}: cannot read ({e.strerror})") from None
    try:
        for t in slots:
            f = handles[t.file_index]
            f.seek(t.data_offset)
            left = t.n_bytes
            while left:
                check(cancel)
                buf = f.read(min(CHUNK, left))
                if not buf:
                    raise ModelFileError(
                        f"{layout.paths[t.file_index]}: truncated in tensor {t.name}"
                    )
                left -= len(buf)
                done += len(buf)
                yield t, buf
                if progress is not None:
                    progress(Progress(Phase.HASH, done, total, t.name))
    finally:
        for f in handles:
            f.close()


def tensor_data_hash(
    model: str | Path | TensorLayout,
    *,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> str:
    """SHA-256 over all tensor data in llama.cpp order; independent of metadata and padding."""
    layout = _layout(model)
    order = sorted(layout.tensors, key=lambda t: llama_order_key(t.name))
    h = hashlib.sha256()
    for _, buf in _tensor_chunks(layout, order, progress, cancel):
        h.update(buf)
    return h.hexdigest()


def per_tensor_hashes(
    model: str | Path | TensorLayout,
    *,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, str]:
    """SHA-256 of each tensor's data bytes, by name (in the file's order)."""
    layout = _layout(model)
    hashes: dict[str, Any] = {}
    for t, buf in _tensor_chunks(layout, list(layout.tensors), progress, cancel):
        h = hashes.get(t.name)
        if h is None:
            h = hashes[t.name] = hashlib.sha256()
        h.update(buf)
    for t in layout.tensors:  # empty tensors give no chunk
        hashes.setdefault(t.name, hashlib.sha256())
    return {t.name: hashes[t.name].hexdigest() for t in layout.tensors}


# --- the model-hash job and its index ---------------------------------------------------------


@dataclass(frozen=True)
class HashRequest:
    """Hash a model's tensor data (any shard of a split model)."""

    model: Path


@dataclass(frozen=True)
class HashResult:
    sha256: str
    n_bytes: int  # tensor-data bytes the hash covers
    cached: bool  # answered from the index without reading the model


HASH_INDEX = "model-hashes.json"
INDEX_FORMAT = "lwq-model-hashes"
#: entries kept in the hash index (oldest dropped first)
MAX_INDEX_ENTRIES = 500


def _stamp(layout: TensorLayout) -> list[list[Any]]:
    """(path, size, mtime_ns) of every shard: any change invalidates the cached hash."""
    out: list[list[Any]] = []
    for p in layout.paths:
        try:
            st = p.stat()
        except OSError as e:
            raise ModelFileError(f"{p}: cannot read ({e.strerror})") from None
        out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _read_index() -> dict[str, Any]:
    try:
        d = json.loads((data_dir() / HASH_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(d, dict) or d.get("format") != INDEX_FORMAT:
        return {}
    models = d.get("models")
    return models if isinstance(models, dict) else {}


def _write_index(models: dict[str, Any]) -> None:
    """Best effort: drop entries whose file is gone, keep the newest ``MAX_INDEX_ENTRIES``."""
    kept = {k: v for k, v in models.items() if Path(k).exists()}
    kept = dict(list(kept.items())[-MAX_INDEX_ENTRIES:])
    text = json.dumps({"format": INDEX_FORMAT, "models": kept}, indent=1) + "\n"
    with contextlib.suppress(OSError, LwqError):
        data_dir().mkdir(parents=True, exist_ok=True)
        atomic_write_text(data_dir() / HASH_INDEX, text)


def _indexed_hash(
    model: str | Path | TensorLayout,
    progress: ProgressSink | None,
    cancel: CancelToken | None,
) -> HashResult:
    layout = _layout(model)
    n_bytes = sum(t.n_bytes for t in layout.tensors)
    stamp = _stamp(layout)  # taken before hashing: a file written meanwhile is hashed again later
    key = stamp[0][0]
    models = _read_index()
    entry = models.get(key)
    if isinstance(entry, dict) and entry.get("files") == stamp and entry.get("sha256"):
        if progress is not None:
            progress(Progress(Phase.HASH, n_bytes, n_bytes, "cached"))
        return HashResult(str(entry["sha256"]), n_bytes, True)
    digest = tensor_data_hash(layout, progress=progress, cancel=cancel)
    models.pop(key, None)  # re-inserted last: the newest entry survives pruning
    models[key] = {"files": stamp, "sha256": digest}
    _write_index(models)
    return HashResult(digest, n_bytes, False)


def record_model_hash(model: str | Path, digest: str) -> None:
    """Put a hash known to be right into the index (a file lwq wrote, hashed, then moved), so
    the moved file is not read again. Best effort, like every index write."""
    layout = _layout(model)
    stamp = _stamp(layout)
    models = _read_index()
    models.pop(stamp[0][0], None)
    models[stamp[0][0]] = {"files": stamp, "sha256": digest}
    _write_index(models)


def hash_model(
    request: HashRequest,
    *,
    progress: ProgressSink = no_progress,
    cancel: CancelToken | None = None,
) -> HashResult:
    """The model's tensor-data SHA-256, from the index while no shard changed size or mtime,
    else read in full (``Phase.HASH`` progress in bytes, cancel between chunks)."""
    check(cancel)
    return _indexed_hash(Path(request.model), progress, cancel)


def model_hash(
    model: str | Path | TensorLayout,
    *,
    progress: ProgressSink | None = None,
    cancel: CancelToken | None = None,
) -> str:
    """``hash_model``'s digest, for a path or an opened model (``ModelInfo``)."""
    check(cancel)
    return _indexed_hash(model, progress, cancel).sha256
