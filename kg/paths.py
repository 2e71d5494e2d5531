"""Where medkg finds the open data when a command is not told: one rule for every package."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the project layout: shared/ beside the checkout


def default_data_dir() -> Path:
    """`$MEDKG_DATA_DIR`, else `shared/data` beside the project checkout medkg runs from: the same
    directory from any working directory."""
    return Path(os.environ.get("MEDKG_DATA_DIR") or PROJECT_DATA)
