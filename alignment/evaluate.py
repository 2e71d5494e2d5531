"""Zero-shot AUC of a trained run on its held-out patients (the simple version the alignment issue needs;
the evaluation command builds on it).

The run's own `config.yaml` says which data and split it trained on, so the test images are exactly the
patients it never saw; nothing here is tuned on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from encoders.transforms import ImageTransform
from kg.problems import ProblemLog

from . import zeroshot
from .config import AlignConfig
from .dataset import prepare_data
from .model import AlignmentModel
from .settings import from_dict
from .train import CONFIG_FILE, MODEL_DIR


def run_config(run: Path) -> AlignConfig:
    path = Path(run) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run} is not a training run (no {CONFIG_FILE})")
    values = yaml.safe_load(path.read_text())
    values.pop("medkg_version", None)
    return from_dict(AlignConfig, values)


def zero_shot(run: Path, data_dir: Path, cache_dir: Path, split: str = "test", device: str = "cpu",
              progress: bool = False) -> dict[str, Any]:
    """{"prompt": {"auc": {label: x}, "mean_auc": x}, "entity": {...} (models with a decoder), "images": n}."""
    config = run_config(run)
    data = prepare_data(config, Path(data_dir), Path(cache_dir), ProblemLog(), progress)
    model = AlignmentModel.from_pretrained(Path(run) / MODEL_DIR, device=device)
    images, states = data.split_images(split)
    rows = list(range(data.vocabulary.num_labels))
    labels = [str(data.vocabulary.labels[r]) for r in rows]
    scores = zeroshot.image_scores(model, images, ImageTransform(config.transform).to(device), rows)
    result: dict[str, Any] = {"images": len(images)}
    for kind, values in scores.items():
        aucs = zeroshot.label_aucs(values, states[:, rows], labels)
        result[kind] = {"auc": aucs, "mean_auc": zeroshot.mean(aucs)}
    return result
