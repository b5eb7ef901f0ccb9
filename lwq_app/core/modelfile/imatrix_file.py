"""Importance-matrix files: llama.cpp's GGUF format and the legacy ``.dat`` format.

GGUF (PR #9400): ``general.type = "imatrix"``, ``imatrix.datasets`` (string array),
``imatrix.chunk_count`` / ``imatrix.chunk_size`` (u32), and per weight tensor
``<name>.in_sum2`` (F32, [ne0, n_mat]) and ``<name>.counts`` (F32, [1, n_mat]).
Legacy ``.dat``: see ``read_dat``. Importance weights are ``in_sum2 / counts`` per expert,
with an expert of zero count weighted 1, exactly as ``llama-quantize`` loads them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.atomic import atomic_output
from ..jobs.errors import ImatrixError
from .inventory import ModelInfo

KEY_DATASETS = "imatrix.datasets"
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"
SUM_SUFFIX = ".in_sum2"
COUNT_SUFFIX = ".counts"


@dataclass(frozen=True)
class ImatrixEntry:
    """Accumulated squared activations of one weight tensor (per expert for MoE)."""

    name: str
    sums: np.ndarray  # float32, shape (n_mat, ne0)
    counts: np.ndarray  # float32, shape (n_mat,)

    @property
    def n_mat(self) -> int:
        return int(self.sums.shape[0])

    @property
    def ne0(self) -> int:
        return int(self.sums.shape[1])

    def weights(self) -> np.ndarray:
        """Flat float32 importance weights as llama-quantize computes them (count 0 → 1)."""
        counts = np.floor(self.counts.astype(np.float64) + 0.5).astype(np.float32)  # lround
        out = np.ones_like(self.sums, dtype=np.float32)
        nz = counts > 0
        out[nz] = self.sums[nz] / counts[nz][:, None]
        return np.ascontiguousarray(out.reshape(-1), dtype=np.float32)


@dataclass(frozen=True)
class Imatrix:
    entries: dict[str, ImatrixEntry]
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0
    chunk_size: int = 0
    is_legacy: bool = False
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def weights(self) -> dict[str, np.ndarray]:
        return {n: e.weights() for n, e in self.entries.items()}

    def zero_count_experts(self) -> dict[str, list[int]]:
        """Tensors with experts that never saw a token (llama-quantize weights these 1)."""
        out = {}
        for n, e in self.entries.items():
            zeros = [int(i) for i in np.flatnonzero(e.counts == 0)]
            if zeros:
                out[n] = zeros
        return out

    def check_model(self, model: ModelInfo, tensors: list[str] | None = None) -> None:
        """Raise ``ImatrixError`` if entries are missing for ``tensors`` or sized wrongly."""
        where = self.source or "imatrix"
        for name, e in self.entries.items():
            t = model.by_name.get(name)
            if t is None:
                continue  # llama-quantize ignores unknown entries too
            if e.ne0 * e.n_mat != t.ne0 * t.n_experts:
                raise ImatrixError(
                    f"{where}: entry {name} has {e.ne0 * e.n_mat} values, tensor has "
                    f"ne0×experts = {t.ne0 * t.n_experts}: imatrix is for another model?"
                )
        if tensors:
            missing = [n for n in tensors if n not in self.entries]
            if missing:
                more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
                raise ImatrixError(
                    f"{where}: no importance data for tensor(s) {', '.join(missing[:5])}{more}"
                )


def read_imatrix(path: str | Path) -> Imatrix:
    """Read a GGUF or legacy ``.dat`` imatrix (format detected from the magic bytes)."""
    p = Path(path)
    if not p.is_file():
        raise ImatrixError(f"{p}: no such imatrix file")
    with p.open("rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return read_gguf(p)
    return read_dat(p)


def read_gguf(path: Path) -> Imatrix:
    from gguf import GGMLQuantizationType, GGUFReader

    try:
        r = GGUFReader(path, "r")
    except Exception as e:  # gguf-py raises assorted errors on damaged files
        raise ImatrixError(f"{path}: corrupted imatrix GGUF ({type(e).__name__}: {e})") from None
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in r.tensors:
        if t.tensor_type != GGMLQuantizationType.F32:
            raise ImatrixError(f"{path}: tensor {t.name} must be F32")
        if t.name.endswith(SUM_SUFFIX):
            ne = [int(d) for d in t.shape] + [1]
            sums[t.name[: -len(SUM_SUFFIX)]] = np.array(t.data, np.float32).reshape(ne[1], ne[0])
        elif t.name.endswith(COUNT_SUFFIX):
            counts[t.name[: -len(COUNT_SUFFIX)]] = np.array(t.data, np.float32).reshape(-1)
    if not sums:
        raise ImatrixError(f"{path}: no imatrix entries (no *.in_sum2 tensors)")
    entries = {}
    for name in sorted(sums.keys() | counts.keys()):
        if name not in sums or name not in counts:
            raise ImatrixError(f"{path}: mismatched sums and counts for {name}")
        s, c = sums[name], counts[name]
        if c.shape[0] != s.shape[0]:
            raise ImatrixError(f"{path}: {name}: {c.shape[0]} counts for {s.shape[0]} matrices")
        entries[name] = ImatrixEntry(name, s, c)

    def val(key: str) -> Any:
        f = r.get_field(key)
        return None if f is None else f.contents()

    missing = [k for k in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE) if val(k) is None]
    if missing:
        raise ImatrixError(f"{path}: missing imatrix metadata {', '.join(missing)}")
    ds = val(KEY_DATASETS)
    return Imatrix(
        entries=entries,
        datasets=tuple(ds if isinstance(ds, list) else [ds]),
        chunk_count=int(val(KEY_CHUNK_COUNT)),
        chunk_size=int(val(KEY_CHUNK_SIZE)),
        source=str(path),
    )


def read_dat(path: Path) -> Imatrix:
    """Legacy layout (little-endian): int32 n; n × (int32 len, name, int32 ncall, int32 nval,
    float32[nval]); optional int32 last_chunk, int32 len, dataset name. Values are
    mean-square activation × ncall; counts become ncall, as llama.cpp's loader does."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ImatrixError(f"{path}: truncated legacy imatrix at byte {pos}")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    (n,) = take("<i")
    if n < 1 or n > 1_000_000:
        raise ImatrixError(f"{path}: not an imatrix file (entry count {n})")
    entries = {}
    for i in range(n):
        (ln,) = take("<i")
        if ln <= 0 or ln > 4096:
            raise ImatrixError(f"{path}: entry {i + 1}: bad name length {ln}")
        (raw,) = take(f"<{ln}s")
        name = raw.decode("utf-8", "replace")
        ncall, nval = take("<ii")
        if nval < 1:
            raise ImatrixError(f"{path}: entry {name}: bad value count {nval}")
        vals = np.frombuffer(data, np.float32, nval, pos).copy()
        pos += 4 * nval
        if len(vals) != nval:
            raise ImatrixError(f"{path}: truncated in entry {name}")
        # store as one matrix whose weights() reproduce llama.cpp: values / ncall
        cnt = np.array([float(ncall) if ncall > 0 else 1.0], np.float32)
        entries[name] = ImatrixEntry(name, vals.reshape(1, -1), cnt)
    chunk_count = 0
    datasets: tuple[str, ...] = ()
    if pos < len(data):
        (chunk_count,) = take("<i")
        if pos < len(data):
            (ln,) = take("<i")
            if ln > 0:
                (raw,) = take(f"<{ln}s")
                datasets = (raw.decode("utf-8", "replace"),)
    return Imatrix(entries, datasets, chunk_count, 0, is_legacy=True, source=str(path))


def write_gguf(im: Imatrix, path: str | Path) -> None:
    """Write llama.cpp's GGUF imatrix (sorted entry names, as llama-imatrix writes them)."""
    from gguf import GGUFWriter

    p = Path(path)
    with atomic_output(p) as tmp:
        w = GGUFWriter(tmp, arch="imatrix")
        w.kv_data[0].pop("general.architecture", None)  # llama-imatrix writes none
        w.add_type("imatrix")
        w.add_array(KEY_DATASETS, list(im.datasets))
        w.add_uint32(KEY_CHUNK_COUNT, im.chunk_count)
        w.add_uint32(KEY_CHUNK_SIZE, im.chunk_size)
        for name in sorted(im.entries):
            e = im.entries[name]
            w.add_tensor(name + SUM_SUFFIX, np.ascontiguousarray(e.sums, np.float32))
            w.add_tensor(name + COUNT_SUFFIX, e.counts.astype(np.float32).reshape(-1, 1))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()


def write_dat(im: Imatrix, path: str | Path) -> None:
    """Write the legacy format like ``save_imatrix_legacy`` (entries without data skipped)."""
    chunk_size = im.chunk_size or 512
    out = bytearray()
    names = [n for n in sorted(im.entries) if np.any(im.entries[n].counts != 0)]
    out += struct.pack("<i", len(names))
    for name in names:
        e = im.entries[name]
        raw = name.encode()
        ncall = int((float(e.counts.max()) + (chunk_size - 1)) // chunk_size)
        vals = np.empty_like(e.sums, dtype=np.float32)
        for j in range(e.n_mat):
            c = np.float32(e.counts[j])
            vals[j] = np.float32(ncall) if c == 0 else (e.sums[j] / c) * np.float32(ncall)
        out += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, vals.size)
        out += vals.astype("<f4").tobytes()
    out += struct.pack("<i", im.chunk_count)
    ds = (im.datasets[-1] if im.datasets else "").encode()
    out += struct.pack("<i", len(ds)) + ds
    with atomic_output(Path(path)) as tmp:
        tmp.write_bytes(bytes(out))


def write_imatrix(im: Imatrix, path: str | Path) -> None:
    """Write GGUF, or legacy ``.dat`` when the name ends in ``.dat``."""
    if str(path).endswith(".dat"):
        write_dat(im, path)
    else:
        write_gguf(im, path)
