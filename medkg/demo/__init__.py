"""`medkg demo`: the main job end to end on the shared data, cached stage by stage, ending in a report page
(`stages` says what each stage does, `pipeline` how they are cached and run, `report` what the page shows)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .pipeline import StageFailed, run_stages
from .stages import STAGE_NAMES, DemoSettings, build_stages, check_data

DATA_ENV = "MEDKG_DATA_DIR"

__all__ = ["STAGE_NAMES", "DemoSettings", "StageFailed", "run_demo"]


def run_demo(settings: DemoSettings, start_from: str | None = None) -> dict[str, dict[str, Any]]:
    """Run (or bring up to date) the demo in `settings.out`; returns each stage's record."""
    from encoders.text import quiet_loading

    check_data(Path(settings.data_dir))
    # Extraction reads its lexicons from the data directory medkg is pointed at ($MEDKG_DATA_DIR), wherever the
    # checkout is: the demo's data directory is that one for the whole run.
    with _data_dir_env(Path(settings.data_dir)), quiet_loading():  # one progress line per stage, no model-loading bars
        return run_stages(build_stages(settings), Path(settings.out), start_from)


@contextmanager
def _data_dir_env(data_dir: Path) -> Iterator[None]:
    previous = os.environ.get(DATA_ENV)
    os.environ[DATA_ENV] = str(data_dir.resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = previous
