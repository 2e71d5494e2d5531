"""The metrics of a run, in long form (`step,epoch,split,name,value`) so that training and validation
records with different names share one CSV a spreadsheet or pandas reads directly, and mirrored to
TensorBoard. On resumption the rows after the checkpoint are cut, since they will be logged again.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from kg.atomic import atomic_open

METRICS_CSV = "metrics.csv"
COLUMNS = ("step", "epoch", "split", "name", "value")


class MetricsLog:
    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_CSV
        self.run_dir = Path(run_dir)
        self.tensorboard = tensorboard
        self._writer: Any = None

    def trim(self, last_step: int) -> None:
        """Keep rows up to `last_step` (the checkpoint's); a fresh run (-1) starts an empty log."""
        rows = [r for r in read_metrics(self.path) if r["step"] <= last_step]
        with atomic_open(self.path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows([r[c] for c in COLUMNS] for r in rows)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=max(last_step + 1, 0))

    def log(self, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerows([step, epoch, split, name, f"{value:.6g}"] for name, value in values.items())
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics CSV with typed values, without a last row cut short by a kill."""
    if not Path(path).exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({"step": int(row["step"]), "epoch": int(row["epoch"]), "split": row["split"],
                             "name": row["name"], "value": float(row["value"])})
            except (TypeError, ValueError):
                continue
    return rows
