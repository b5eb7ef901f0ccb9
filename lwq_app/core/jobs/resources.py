"""Texts lwq ships: the calibration text and an evaluation excerpt (see their ATTRIBUTION.md).

The top-level ``resources/`` folder is installed as the package ``lwq_app.resources``
(``[tool.setuptools.package-dir]`` in ``pyproject.toml``), so a wheel carries it; in a source
checkout imported from its own folder that package is not on the path and the folder itself
is used.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _root() -> Path:
    try:
        root = resources.files("lwq_app.resources")
    except ModuleNotFoundError:  # a source checkout: the folder beside the package
        return Path(__file__).resolve().parents[3] / "resources"
    if isinstance(root, Path):
        return root
    # resources/ has no __init__.py, so lwq_app.resources is a namespace package and
    # ``files`` gives a MultiplexedPath over its folders: the child is a real path in one
    child = root.joinpath("eval")
    if isinstance(child, Path):
        return child.parent
    return Path(str(child)).parent


RESOURCES = _root()
CALIBRATION_TEXT = RESOURCES / "calibration" / "lwq-calibration-v1.txt"
WIKITEXT_EXCERPT = RESOURCES / "eval" / "wikitext-2-raw-test-excerpt.txt"
