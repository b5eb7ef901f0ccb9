"""Sizes with explicit units: ``3.9GB`` is decimal (10^9), ``3.6GiB`` binary (2^30)."""

from __future__ import annotations

import re

_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]+)\s*$")


def parse_size(text: str) -> int:
    """Bytes in ``text``; a unit is required (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(
            f"size {text!r} needs a number and a unit, e.g. 3.9GB (decimal) or 3.6GiB (binary)"
        )
    unit = m.group(2).upper()
    if unit not in _UNITS:
        raise ValueError(
            f"unknown size unit {m.group(2)!r} in {text!r}; use B, KB, MB, GB, KiB, MiB, GiB"
        )
    return round(float(m.group(1)) * _UNITS[unit])


def format_size(n: int | float, binary: bool = False) -> str:
    """``123456789`` -> ``123.46 MB`` (or ``117.74 MiB`` with ``binary``)."""
    step, names = (
        (1024.0, ("B", "KiB", "MiB", "GiB", "TiB"))
        if binary
        else (1000.0, ("B", "KB", "MB", "GB", "TB"))
    )
    v = float(n)
    for name in names:
        if abs(v) < step or name == names[-1]:
            return f"{v:.0f} {name}" if name == "B" else f"{v:.2f} {name}"
        v /= step
    return f"{v:.2f} {names[-1]}"
