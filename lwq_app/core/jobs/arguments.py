"""Every numeric argument of a job, checked in one place, with messages naming the option.

The CLI and the core requests call the same functions (the CLI is not the only caller), so a
GUI gets the same one-line ``InputError`` as ``lwq`` does: ``--target-size -1GB: a size
cannot be negative``, ``--target-bpw nan: must be a number above 0 and at most 32``.
"""

from __future__ import annotations

import math
from numbers import Real

from .errors import InputError, shown
from .units import parse_size

#: no bits-per-weight target can exceed F32's
MAX_BPW = 32.0
#: no size lwq deals in comes near 2^62 bytes (4 EiB); anything above is a typo
MAX_SIZE = 2**62
#: more threads than any machine has is a typo (0 = all cores)
MAX_THREADS = 4096
#: llama.cpp offloads at most this many layers (it clamps larger numbers to "all")
MAX_GPU_LAYERS = 100_000
#: contexts, batches and chunk counts above this are typos, not requests
MAX_COUNT = 2**31 - 1


def size_option(text: object, option: str) -> int:
    """Bytes of a size with a unit given to ``option`` (``3.9GB``, ``3.6GiB``): positive, finite,
    at most ``MAX_SIZE``; else ``InputError`` naming the option."""
    if not isinstance(text, str):
        raise InputError(f"{option} {shown(text)}: expected a size with a unit, e.g. 3.9GB")
    try:
        n = parse_size(text)
    except ValueError as e:
        raise InputError(f"{option}: {e}") from None
    return check_size(n, option, text)


def check_size(n: object, option: str, label: str | None = None) -> int:
    """A byte count for ``option``: an integer above 0 and at most ``MAX_SIZE``."""
    what = shown(label if label is not None else n)
    if isinstance(n, bool) or not isinstance(n, int):
        raise InputError(f"{option} {what}: expected a whole number of bytes")
    if n <= 0:
        raise InputError(f"{option} {what}: must be above 0 bytes")
    if n > MAX_SIZE:
        raise InputError(f"{option} {what}: too large (at most {MAX_SIZE} bytes)")
    return n


def bpw_option(value: object, option: str = "--target-bpw") -> float:
    """A bits-per-weight target: a finite number above 0 and at most ``MAX_BPW``."""
    ok = isinstance(value, Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not (math.isfinite(v) and 0 < v <= MAX_BPW):
        raise InputError(
            f"{option} {shown(value)}: must be a number above 0 and at most {MAX_BPW:g}"
        )
    return v


def int_option(
    value: object,
    option: str,
    *,
    minimum: int = 1,
    maximum: int = MAX_COUNT,
    special: tuple[int, ...] = (),
    meaning: str = "",
    unit: str = "",
) -> int:
    """An integer for ``option`` in ``[minimum, maximum]`` or one of ``special`` (e.g. -1 =
    all); ``meaning`` explains the special values in the message, ``unit`` names what is
    counted ("depth group")."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{option} {shown(value)}: expected a whole number")
    if value in special or minimum <= value <= maximum:
        return value
    extra = f" ({meaning})" if meaning else ""
    if value < minimum:
        counted = f" {unit}" if unit else ""
        raise InputError(f"{option} {value}: must be at least {minimum}{counted}{extra}")
    raise InputError(f"{option} {shown(value, 40)}: too large (at most {maximum}){extra}")


def threads_option(value: object, option: str = "--threads") -> int:
    """A thread count: 0 (all cores) to ``MAX_THREADS``."""
    return int_option(value, option, minimum=0, maximum=MAX_THREADS, meaning="0 = all cores")


def gpu_layers_option(value: object, option: str = "--gpu-layers") -> int:
    """Layers to offload: 0 (none) to ``MAX_GPU_LAYERS``."""
    return int_option(value, option, minimum=0, maximum=MAX_GPU_LAYERS)


def count_option(
    value: object,
    option: str,
    *,
    minimum: int = 1,
    all_value: int | None = None,
    unit: str = "",
) -> int:
    """A context, batch or chunk count (at least ``minimum``); ``all_value`` (e.g. -1 or 0)
    means "all"."""
    special = () if all_value is None else (all_value,)
    meaning = "" if all_value is None else f"{all_value} = all"
    return int_option(value, option, minimum=minimum, special=special, meaning=meaning, unit=unit)
