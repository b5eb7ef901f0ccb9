from __future__ import annotations

import pytest

from lwq_app.core.jobs.units import format_size, parse_size


def test_parse_units() -> None:
    assert parse_size("3.9GB") == 3_900_000_000
    assert parse_size("3.6GiB") == round(3.6 * 2**30)
    assert parse_size("512 MiB") == 512 * 2**20
    assert parse_size("100B") == 100


@pytest.mark.parametrize("bad", ["3.9", "GB", "3.9 gigs", ""])
def test_parse_needs_unit(bad: str) -> None:
    with pytest.raises(ValueError, match="unit"):
        parse_size(bad)


def test_format() -> None:
    assert format_size(103668480) == "103.67 MB"
    assert format_size(2**30, binary=True) == "1.00 GiB"
