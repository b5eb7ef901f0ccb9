"""Sizes with explicit units: ``3.9GB`` is decimal (10^9), ``3.6GiB`` binary (2^30)."""

from __future__ import annotations

import re

from .errors import shown

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
_SIZE_RE = re.compile(r"^\s*([+-]?)([0-9]*\.?[0-9]+)\s*([A-Za-z]+)\s*$")
#: digits of a size's number beyond which it is a typo (a float would round it to inf)
_MAX_DIGITS = 30
#: longer texts are refused before the regex sees them (it backtracks on long digit runs)
_MAX_TEXT = 100


def parse_size(text: str) -> int:
    """Bytes in ``text``; a unit is required (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).

    ``ValueError`` (with the text escaped) for anything else: no unit, an unknown unit, a
    negative number, a number of more than 30 digits before the point."""
    if isinstance(text, str) and len(text) > _MAX_TEXT:
        raise ValueError(f"size '{shown(text, 40)}' is too long ({len(text)} characters)")
    m = _SIZE_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(
            f"size '{shown(text)}' needs a number and a unit, e.g. 3.9GB (decimal) or 3.6GiB "
            "(binary)"
        )
    sign, number, unit_text = m.groups()
    unit = unit_text.upper()
    if unit not in _UNITS:
        raise ValueError(
            f"unknown size unit '{shown(unit_text, 20)}' in '{shown(text)}'; "
            "use B, KB, MB, GB, KiB, MiB, GiB"
        )
    if sign == "-" and float(number) != 0:
        raise ValueError(f"size '{shown(text)}' is negative; a size must be above 0")
    if len(number.partition(".")[0].lstrip("0")) > _MAX_DIGITS:
        raise ValueError(f"size '{shown(text, 40)}' is too large ({len(number)} digits)")
    return round(float(number) * _UNITS[unit])


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
