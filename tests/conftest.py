"""Session fixtures: the real SmolLM2 model (upcast once, cached), synthetic GGUFs, goldens."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# lwq's user data (projects, the model-hash index) and its caches (base logits, sensitivity
# tables, fetched data) go to folders of this test session, removed at its end
for _var, _prefix in (("LWQ_DATA_DIR", "lwq-test-data-"), ("LWQ_CACHE_DIR", "lwq-test-cache-")):
    if not os.environ.get(_var):
        os.environ[_var] = _made = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, _made, True)
# No test reaches the internet: the Hub is a loopback server a test starts (hub_server.py,
# which points HF_ENDPOINT at itself); any other Hub request, from this process or a child,
# goes to a closed local port and fails at once. Set before huggingface_hub is imported (it
# reads these once); the session's own HF_HOME keeps the user's token and cache out of it.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
for _var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE"):
    os.environ.pop(_var, None)
os.environ["HF_HOME"] = _hf_home = tempfile.mkdtemp(prefix="lwq-test-hf-")
atexit.register(shutil.rmtree, _hf_home, True)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures  # noqa: E402  (after the environment above)

GOLDEN = Path(__file__).resolve().parent / "golden"


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
    from lwq_app.core.modelfile.inventory import open_model

    path = fixtures.smollm2_offgrid_f16()
    want = manifest["fixtures"]["smollm2_offgrid_f16_tensor_data_sha256"]
    got = open_model(path).tensor_data_hash()
    assert got == want, (
        f"off-grid fixture {path} differs from the one the golden values were made on; "
        "delete the fixture cache or regenerate tests/golden"
    )
    return path


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The loopback Hugging Face Hub (tests/hub_server.py), this process and its children pointed
    at it: HF_ENDPOINT, HF_HOME and LWQ_CACHE_DIR in tmp_path, Xet off."""
    from hub_server import hub_env

    with hub_env(tmp_path, monkeypatch) as server:
        yield server


@pytest.fixture(scope="session")
def golden_imatrix() -> Path:
    return GOLDEN / "smollm2.imatrix.gguf"


@pytest.fixture(scope="session", params=fixtures.SYNTHETIC)
def synthetic_model(request: pytest.FixtureRequest) -> Path:
    return fixtures.synthetic(request.param)


@pytest.fixture(scope="session")
def wiki_text() -> str:
    return fixtures.WIKI.read_text(encoding="utf-8")


# --- the fuzz suite (tests/fuzz) -----------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("lwq fuzz")
    g.addoption(
        "--fuzz-cases",
        type=int,
        default=None,
        metavar="N",
        help="total in-process fuzz cases across formats (default: the CI size, ~10,500); "
        "e.g. 200000 for the nightly run",
    )
    g.addoption(
        "--fuzz-seed",
        type=int,
        default=None,
        metavar="S",
        help="seed of the fuzz suite (default: the CI seed; every case is reproducible from "
        "format, seed and index)",
    )


@pytest.fixture(scope="session")
def fuzz_cases(request: pytest.FixtureRequest) -> int | None:
    return request.config.getoption("--fuzz-cases")


@pytest.fixture(scope="session")
def fuzz_seed(request: pytest.FixtureRequest) -> int | None:
    return request.config.getoption("--fuzz-seed")
