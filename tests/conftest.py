"""Shared test fixtures: where the real data lives (`../shared/data`, or `$MEDKG_DATA_DIR`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("MEDKG_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder; a missing one fails the test rather than skipping it."""
    assert DATA_DIR.is_dir(), f"real data folder not found: {DATA_DIR} (set MEDKG_DATA_DIR)"
    return DATA_DIR
