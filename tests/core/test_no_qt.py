"""Light imports: the core is what the headless CLI, the tests and the GUI's first window load.

Importing any core package (or the CLI) loads none of llama.cpp, torch, huggingface_hub or Qt:
those load when a job runs (in its child process, mostly). And no core module, imported at
all, ever pulls in Qt.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import lwq_app.core

PACKAGES = [
    "lwq_app.core",
    "lwq_app.core.jobs",
    "lwq_app.core.engine",
    "lwq_app.core.modelfile",
    "lwq_app.core.plan",
    "lwq_app.core.importance",
    "lwq_app.core.evaluate",
    "lwq_app.core.results",
    "lwq_app.core.optimize",
    "lwq_app.core.hub",
    "lwq_app.cli",
]
HEAVY = ("llama_cpp", "torch", "huggingface_hub", "PySide6", "shiboken6", "pyqtgraph")
QT = ("PySide6", "shiboken6", "pyqtgraph")


def _loaded_after(imports: list[str], roots: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {imports!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted({{m for m in sys.modules if m.split('.')[0] in {roots!r}}})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import json

    return list(json.loads(r.stdout.strip().splitlines()[-1]))


def test_the_stage_packages_are_all_listed() -> None:
    stages = {m.name for m in pkgutil.iter_modules(lwq_app.core.__path__, "lwq_app.core.")}
    assert stages <= set(PACKAGES), f"add the new stage to PACKAGES: {stages - set(PACKAGES)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_loads_no_heavy_dependency(package: str) -> None:
    heavy = _loaded_after([package], HEAVY)
    assert not heavy, f"importing {package} loads {sorted({m.split('.')[0] for m in heavy})}"


def test_no_core_module_imports_qt() -> None:
    modules = [m.name for m in pkgutil.walk_packages(lwq_app.core.__path__, "lwq_app.core.")]
    assert len(modules) >= 40
    assert not _loaded_after([*modules, "lwq_app.cli"], QT)
