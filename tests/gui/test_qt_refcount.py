"""The Qt binding keeps Python's reference counts: a guard against a known-bad release.

PySide6 6.12.0 drops one reference to ``True``/``False`` on every Python-side ``emit`` of a
bool (with or without receivers); on Python 3.11, where the two are not immortal, the
interpreter aborts once the count reaches zero ("bool_dealloc: deallocating True or False"),
seen here as the tour and the test session dying at exit. pyproject.toml excludes that
release; this test fails on any release that brings the bug back.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    flag = Signal(bool)
    value = Signal(object)


def test_emitting_bools_keeps_their_reference_counts(qapp) -> None:
    e = _Emitter()
    got: list[object] = []
    e.flag.connect(got.append)
    e.value.connect(got.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(50):
        e.flag.emit(i % 2 == 0)
        e.value.emit(i % 2 == 1)
    got.clear()
    assert (sys.getrefcount(True), sys.getrefcount(False)) == before
