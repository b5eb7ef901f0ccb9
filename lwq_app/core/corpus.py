"""Texts lwq ships: the calibration text and an evaluation excerpt (see their ATTRIBUTION.md)."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
CALIBRATION_TEXT = RESOURCES / "calibration" / "lwq-calibration-v1.txt"
WIKITEXT_EXCERPT = RESOURCES / "eval" / "wikitext-2-raw-test-excerpt.txt"
