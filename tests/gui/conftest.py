"""GUI test fixtures: offscreen Qt, isolated settings, and the real window.

Qt must see ``QT_QPA_PLATFORM=offscreen`` before it loads, so it is set at import (the
top-level conftest does too). Every ``QSettings()`` any view makes lands in a folder of this
test session (``QSettings.setPath``), and the window's own settings in the test's
``tmp_path``. Qt warnings fail the test (``qt_log_level_fail`` in pyproject.toml).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

_SETTINGS = tempfile.mkdtemp(prefix="lwq-test-qsettings-")
atexit.register(shutil.rmtree, _SETTINGS, True)
QSettings.setDefaultFormat(QSettings.Format.IniFormat)
for _scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
    QSettings.setPath(QSettings.Format.IniFormat, _scope, _SETTINGS)


@pytest.fixture(scope="session")
def qapp() -> QApplication:
    """The application as ``lwq_app.gui.app`` makes it (names, pyqtgraph's options)."""
    from lwq_app.gui.app import make_application

    return make_application()


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "lwq-settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window_factory(qtbot, qapp: QApplication, settings: QSettings) -> Iterator[Callable[..., Any]]:
    """Builds real ``MainWindow``s over fresh ``AppContext``s; each is closed the way a user
    closes it (shutdown: cancel jobs, save and release the project) after the test."""
    from lwq_app.gui.app import build_context
    from lwq_app.gui.main_window import MainWindow

    made: list[MainWindow] = []

    def make(*, show: bool = True, quick: bool = False) -> MainWindow:
        window = MainWindow(build_context(settings, quick=quick))
        made.append(window)
        if show:
            window.show()
            qtbot.waitExposed(window)
        return window

    yield make
    for window in made:
        close_window(qtbot, window)


@pytest.fixture
def app_window(window_factory: Callable[..., Any]) -> Any:
    """The real ``MainWindow``, shown (closed by ``window_factory`` after the test)."""
    return window_factory()


def close_window(qtbot, window) -> None:
    """Close ``window`` and wait until its shutdown is over."""
    if not window.shutdown.done:
        window.close()
        qtbot.waitUntil(lambda: window.shutdown.done, timeout=10_000)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=2_000)
    window.ctx.runner.wait(5)
    window.deleteLater()
