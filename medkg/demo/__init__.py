"""`medkg demo`: the main job end to end on the shared data, cached stage by stage, ending in a report page
(`stages` says what each stage does, `pipeline` how they are cached and run, `report` what the page shows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .pipeline import StageFailed, run_stages
from .stages import STAGE_NAMES, DemoSettings, build_stages, check_data

__all__ = ["STAGE_NAMES", "DemoSettings", "StageFailed", "run_demo"]


def run_demo(settings: DemoSettings, start_from: str | None = None) -> dict[str, dict[str, Any]]:
    """Run (or bring up to date) the demo in `settings.out`; returns each stage's record."""
    from encoders.text import quiet_loading

    check_data(Path(settings.data_dir))
    with quiet_loading():  # one progress line per stage, not transformers' bars for every model saved or loaded
        return run_stages(build_stages(settings), Path(settings.out), start_from)
