"""Session fixtures: the real SmolLM2 model (upcast once, cached), synthetic GGUFs, goldens."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# lwq's user data (projects, the model-hash index) goes to a folder of this test session
os.environ.setdefault("LWQ_DATA_DIR", tempfile.mkdtemp(prefix="lwq-test-data-"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures

GOLDEN = Path(__file__).resolve().parent / "golden"
SHARED = fixtures.ROOT.parent / "shared"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((GOLDEN / "MANIFEST.json").read_text())


@pytest.fixture(scope="session")
def smollm2_q4_1() -> Path:
    return fixtures.smollm2_q4_1()


@pytest.fixture(scope="session")
def smollm2_f16() -> Path:
    return fixtures.smollm2_f16()


@pytest.fixture(scope="session")
def smollm2(manifest: dict) -> Path:
    """The off-grid F16 SmolLM2 every quality test uses; its bytes must match the goldens'."""
    from lwq_app.core.model import open_model

    path = fixtures.smollm2_offgrid_f16()
    want = manifest["fixtures"]["smollm2_offgrid_f16_tensor_data_sha256"]
    got = open_model(path).tensor_data_hash()
    assert got == want, (
        f"off-grid fixture {path} differs from the one the golden values were made on; "
        "delete the fixture cache or regenerate tests/golden"
    )
    return path


@pytest.fixture(scope="session")
def golden_imatrix() -> Path:
    return GOLDEN / "smollm2.imatrix.gguf"


@pytest.fixture(scope="session", params=fixtures.SYNTHETIC)
def synthetic_model(request: pytest.FixtureRequest) -> Path:
    return fixtures.synthetic(request.param)


@pytest.fixture(scope="session")
def wiki_text() -> str:
    p = SHARED / "data" / "wikitext-2-raw" / "wiki.test.raw"
    return p.read_text(encoding="utf-8")
