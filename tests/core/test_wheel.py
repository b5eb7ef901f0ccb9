"""The wheel is self-contained: every package is listed in pyproject.toml, the bundled texts
(resources/ as ``lwq_app.resources``) ship in it, and a non-editable install evaluates SmolLM2
with its default text from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return dict(tomllib.load(f)["tool"]["setuptools"])


def test_pyproject_lists_every_package() -> None:
    listed = set(_config()["packages"])
    found = {
        ".".join(d.relative_to(ROOT).parts)
        for d in (ROOT / "lwq_app").rglob("*")
        if d.is_dir() and (d / "__init__.py").exists()
    } | {"lwq_app"}
    found |= {"lwq_app.resources"} | {
        f"lwq_app.resources.{d.name}" for d in (ROOT / "resources").iterdir() if d.is_dir()
    }
    # the vendored converter's importable sub-packages (not gguf-py: not a package name)
    found |= {
        "lwq_app.resources." + ".".join(d.relative_to(ROOT / "resources").parts)
        for d in (ROOT / "resources").rglob("*")
        if (d / "__init__.py").is_file()
        and all(p.isidentifier() for p in d.relative_to(ROOT / "resources").parts)
    }
    assert listed == found


def test_resources_map_to_the_top_level_folder() -> None:
    cfg = _config()
    assert cfg["package-dir"] == {"lwq_app.resources": "resources"}
    for sub in (ROOT / "resources").iterdir():
        if sub.is_dir():
            patterns = cfg["package-data"][f"lwq_app.resources.{sub.name}"]
            for f in sub.iterdir():
                assert any(f.match(p) for p in patterns), f"{f} would not ship in the wheel"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lwq built as a wheel (from a copy of the sources) and installed with --target."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("lwq_app", "resources"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(src)], check=True)
    (wheel,) = (tmp / "dist").glob("lwq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for f in (ROOT / "resources").rglob("*"):
        if f.is_file():
            assert f"lwq_app/{f.relative_to(ROOT).as_posix()}" in names
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def _env(target: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWQ_")}
    env.update(
        PYTHONPATH=str(target),  # only lwq comes from the wheel; the rest from this venv
        LWQ_CACHE_DIR=str(tmp / "cache"),
        LWQ_DATA_DIR=str(tmp / "data"),
    )
    return env


@pytest.mark.slow
def test_installed_wheel_evaluates_with_its_bundled_text(
    installed: Path, smollm2: Path, tmp_path: Path
) -> None:
    env = _env(installed, tmp_path)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import lwq_app.core.jobs.resources as r; "
         "print(r.__file__); print(r.WIKITEXT_EXCERPT); print(r.CALIBRATION_TEXT)"],
        capture_output=True, text=True, cwd=cwd, env=env, check=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(installed) for p in where), where
    assert all(Path(p).is_file() for p in where)
    cmd = [sys.executable, "-m", "lwq_app.cli", "eval", str(smollm2),
           "--chunks", "2", "--ctx", "128", "--no-store"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Final estimate: PPL = " in r.stdout
    assert Path(where[1]).name in r.stderr  # it said which default text it used
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.json"))


def test_the_checkout_needs_nothing_beside_it() -> None:
    """No file of the package, the tests or CI refers to a folder beside the repository."""
    needle = "../" + "shared"
    hits = [
        str(f.relative_to(ROOT))
        for top in ("lwq_app", "tests", ".ci")
        for f in (ROOT / top).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and needle in f.read_text("utf-8", "ignore")
    ]
    assert not hits
