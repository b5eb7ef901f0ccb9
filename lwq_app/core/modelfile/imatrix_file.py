"""Importance-matrix files: llama.cpp's GGUF format and the legacy ``.dat`` format.

GGUF (PR #9400): ``general.type = "imatrix"``, ``imatrix.datasets`` (string array),
``imatrix.chunk_count`` / ``imatrix.chunk_size`` (u32), and per weight tensor
``<name>.in_sum2`` (F32, [ne0, n_mat]) and ``<name>.counts`` (F32, [1, n_mat]).
Legacy ``.dat``: see ``read_dat``. Importance weights are ``in_sum2 / counts`` per expert,
with an expert of zero count weighted 1, exactly as ``llama-quantize`` loads them.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..jobs.atomic import atomic_output
from ..jobs.errors import ImatrixError
from .inventory import ModelInfo
from .type_catalog import TYPES_BY_ID

KEY_DATASETS = "imatrix.datasets"
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"
SUM_SUFFIX = ".in_sum2"
COUNT_SUFFIX = ".counts"
_GGUF_U32 = 4  # GGUF value type id of uint32
#: the largest importance sum accepted: a sum of squared activations over the tokens seen
#: (even fp16's largest activation, 65504, squared over 10^7 tokens stays below 10^17)
MAX_SUM = 1e18


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

    def check_model(
        self, model: ModelInfo, tensors: list[str] | None = None, *, strict: bool = False
    ) -> None:
        """Raise ``ImatrixError`` if entries are missing for ``tensors`` or sized wrongly.

        ``strict`` (a project adopting an imatrix): every entry must name a tensor of the
        model, and a GGUF entry's row width and expert count must each match (a legacy
        ``.dat`` entry is one flat row per tensor: only the product can be checked)."""
        where = self.source or "imatrix"
        for name, e in self.entries.items():
            t = model.by_name.get(name)
            if t is None:
                if strict:
                    raise ImatrixError(
                        f"{where}: entry {name} is not a tensor of {model.path.name}: "
                        "imatrix is for another model"
                    )
                continue  # llama-quantize ignores unknown entries too
            if strict and not self.is_legacy and (e.ne0, e.n_mat) != (t.ne0, t.n_experts):
                raise ImatrixError(
                    f"{where}: entry {name} has rows of {e.ne0} for {e.n_mat} expert(s), tensor "
                    f"has ne0 {t.ne0} for {t.n_experts}: imatrix is for another model"
                )
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
    """Read llama.cpp's GGUF imatrix through lwq's bounds-checked header reader.

    Refused with ``ImatrixError`` naming the file and the tensor or key: anything
    ``read_header`` refuses, sums or counts that are not F32 of at most 2 dims, sums without
    counts (or the reverse), a counts tensor of the wrong length, ``imatrix.datasets`` not
    strings, ``imatrix.chunk_count``/``chunk_size`` not uint32 (llama.cpp aborts on those),
    and values ``check_entry`` refuses."""
    from .gguf_header import StringArray, read_header

    h = read_header(path, keep_strings=(KEY_DATASETS,), error=ImatrixError)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    mm: np.ndarray | None = None
    for t in h.tensors:
        if t.name.endswith(SUM_SUFFIX):
            base, into = t.name[: -len(SUM_SUFFIX)], sums
        elif t.name.endswith(COUNT_SUFFIX):
            base, into = t.name[: -len(COUNT_SUFFIX)], counts
        else:
            continue  # llama.cpp ignores other tensors too
        if TYPES_BY_ID[t.type_id].name != "F32":
            raise ImatrixError(f"{path}: tensor {t.name} must be F32")
        if len(t.shape) > 2:
            raise ImatrixError(f"{path}: tensor {t.name} has {len(t.shape)} dims (at most 2)")
        if mm is None:
            mm = np.memmap(path, dtype=np.uint8, mode="r")
        ne0 = t.shape[0]
        n_mat = t.shape[1] if len(t.shape) > 1 else 1
        a = np.frombuffer(mm, "<f4", ne0 * n_mat, t.data_offset).astype(np.float32)
        into[base] = a.reshape(n_mat, ne0) if into is sums else a
    if not sums:
        raise ImatrixError(f"{path}: no imatrix entries (no *.in_sum2 tensors)")
    entries = {}
    for name in sorted(sums.keys() | counts.keys()):
        if name not in sums or name not in counts:
            raise ImatrixError(f"{path}: mismatched sums and counts for {name}")
        s, c = sums[name], counts[name]
        if c.shape[0] != s.shape[0]:
            raise ImatrixError(f"{path}: {name}: {c.shape[0]} counts for {s.shape[0]} matrices")
        entries[name] = check_entry(ImatrixEntry(name, s, c), path)

    missing = [k for k in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE) if k not in h.metadata]
    if missing:
        raise ImatrixError(f"{path}: missing imatrix metadata {', '.join(missing)}")
    ds = h.metadata[KEY_DATASETS]
    if isinstance(ds, StringArray) or not (
        isinstance(ds, str) or (isinstance(ds, list) and all(isinstance(x, str) for x in ds))
    ):
        raise ImatrixError(f"{path}: {KEY_DATASETS} must be an array of strings")
    for key in (KEY_CHUNK_COUNT, KEY_CHUNK_SIZE):
        if h.kv_types[key] != (_GGUF_U32, None):
            raise ImatrixError(
                f"{path}: {key} must be a uint32, not {h.metadata[key]!r} (llama.cpp aborts)"
            )
    return Imatrix(
        entries=entries,
        datasets=tuple(ds if isinstance(ds, list) else [ds]),
        chunk_count=int(h.metadata[KEY_CHUNK_COUNT]),
        chunk_size=int(h.metadata[KEY_CHUNK_SIZE]),
        source=str(path),
    )


def check_entry(e: ImatrixEntry, where: str | Path) -> ImatrixEntry:
    """Refuse importance data llama.cpp cannot take, naming the tensor: sums must be finite,
    >= 0 (a negative weight aborts its IQ quantizers: ``GGML_ASSERT(grid_index >= 0)``) and
    at most ``MAX_SUM`` (float32 math on them overflows: NaN scales, ``inf`` statistics);
    counts finite and >= 0 (an expert of count 0 never saw a token: weighted 1)."""
    for what, a, top in (("sums", e.sums, MAX_SUM), ("counts", e.counts, math.inf)):
        ok = np.isfinite(a) & (a >= 0) & (a <= top)
        if not ok.all():
            i = int(np.flatnonzero(~ok.reshape(-1))[0])
            v = float(a.reshape(-1)[i])
            if v < 0:
                kind = "a negative"
            elif not math.isfinite(v):
                kind = "a non-finite"
            else:
                kind = "an implausibly large"
            bound = f"finite, >= 0 and <= {MAX_SUM:g}" if top == MAX_SUM else "finite and >= 0"
            raise ImatrixError(
                f"{where}: tensor {e.name} has {kind} importance {what} value ({v:g} at index "
                f"{i}): importance data must be {bound}"
            )
    return e


def read_dat(path: Path) -> Imatrix:
    """Legacy layout (little-endian): int32 n; n × (int32 len, name, int32 ncall, int32 nval,
    float32[nval]); optional int32 last_chunk, int32 len, dataset name. Values are
    mean-square activation × ncall; counts become ncall, as llama.cpp's loader does.
    Every length is checked against the bytes left before it is used."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str, what: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ImatrixError(f"{path}: truncated legacy imatrix at byte {pos} ({what})")
        out = struct.unpack_from(fmt, data, pos)
        pos += size
        return out

    def text(n: int, what: str) -> str:
        (raw,) = take(f"<{n}s", what)
        try:
            return str(raw.decode("utf-8"))
        except UnicodeDecodeError:
            pass
        raise ImatrixError(f"{path}: invalid UTF-8 in {what} at byte {pos - n}")

    (n,) = take("<i", "entry count")
    if n < 1 or n > 1_000_000:
        raise ImatrixError(f"{path}: not an imatrix file (entry count {n})")
    entries = {}
    for i in range(n):
        (ln,) = take("<i", f"entry {i + 1}")
        if ln <= 0 or ln > 4096:
            raise ImatrixError(f"{path}: entry {i + 1}: bad name length {ln}")
        name = text(ln, f"the name of entry {i + 1}")
        if name in entries:
            raise ImatrixError(f"{path}: entry {name} appears twice")
        ncall, nval = take("<ii", f"entry {name}")
        if nval < 1:
            raise ImatrixError(f"{path}: entry {name}: bad value count {nval}")
        if ncall < 0:
            raise ImatrixError(f"{path}: entry {name}: negative call count {ncall}")
        if pos + 4 * nval > len(data):
            raise ImatrixError(
                f"{path}: truncated in entry {name} ({nval} values need {4 * nval} bytes at "
                f"byte {pos}, the file has {len(data) - pos} left)"
            )
        vals = np.frombuffer(data, "<f4", nval, pos).astype(np.float32)
        pos += 4 * nval
        # store as one matrix whose weights() reproduce llama.cpp: values / ncall
        cnt = np.array([float(ncall) if ncall > 0 else 1.0], np.float32)
        entries[name] = check_entry(ImatrixEntry(name, vals.reshape(1, -1), cnt), path)
    chunk_count = 0
    datasets: tuple[str, ...] = ()
    if pos < len(data):
        (chunk_count,) = take("<i", "chunk count")
        if pos < len(data):
            (ln,) = take("<i", "dataset name length")
            if ln > 0:
                datasets = (text(ln, "the dataset name"),)
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
