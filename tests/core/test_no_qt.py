"""The core must never import Qt: it is what the headless CLI and the tests drive."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lwq_app.core


def test_core_imports_no_qt() -> None:
    modules = [m.name for m in pkgutil.iter_modules(lwq_app.core.__path__, "lwq_app.core.")]
    assert len(modules) >= 10
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "import lwq_app.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, f"Qt modules imported by the core: {r.stdout} {r.stderr}"
