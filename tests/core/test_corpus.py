"""The bundled texts: exact bytes, and the eval default when no -f is given."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fixtures
from lwq_app.core.jobs.resources import CALIBRATION_TEXT, WIKITEXT_EXCERPT


def test_excerpt_is_a_byte_exact_prefix_of_wikitext_test() -> None:
    excerpt = WIKITEXT_EXCERPT.read_bytes()
    full = fixtures.WIKI.read_bytes()
    assert len(excerpt) > 100_000 and excerpt.endswith(b"\r\n")
    assert full.startswith(excerpt)  # CRLF kept: .gitattributes marks it -text


def test_calibration_text_is_the_one_the_goldens_used(manifest: dict) -> None:
    digest = hashlib.sha256(CALIBRATION_TEXT.read_bytes()).hexdigest()
    assert digest == manifest["fixtures"]["calibration_sha256"]


@pytest.mark.slow
def test_eval_defaults_to_the_bundled_excerpt(smollm2: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lwq_app.cli", "eval", str(smollm2), "--ctx", "128",
         "--chunks", "2", "--threads", "2", "--json", "--no-store"],
        capture_output=True, text=True,
        env={**os.environ, "LWQ_CACHE_DIR": str(tmp_path)},  # no fetched full test set here
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "bundled wikitext-2 test excerpt" in r.stderr
    assert '"ppl"' in r.stdout.lower() or "ppl" in r.stdout.lower()
