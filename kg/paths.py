"""Where medkg finds the open data when a command is not told: one rule for every package."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """`$MEDKG_DATA_DIR`, else `../shared/data` beside the working directory (the project layout)."""
    return Path(os.environ.get("MEDKG_DATA_DIR") or "../shared/data")
