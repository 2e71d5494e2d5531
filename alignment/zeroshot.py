"""Zero-shot scores of images against label prompts, and the AUC that judges them (a simple version
for validation during training; the evaluation command builds on it).

Each image is scored on its own, never normalised across the evaluation batch (GLoRIA z-scores each
class over the batch, so its scores depend on which images share it). Two scores per label:
- `prompt`: the softmax, at the model's own temperature, of the image's similarity to a positive prompt
  ("pleural effusion") against a negative one ("no pleural effusion"): the CLIP way, open vocabulary;
- `entity`: the entity decoder's probability that the label's entity is present, for models that have
  one. The decoder learns from image labels of the training split: this score is zero-shot only for
  entities no training image was labelled with, and is reported apart from `prompt` for that reason.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from encoders.transforms import ImageTransform

from .model import AlignmentModel
from .states import ABSENT, PRESENT


def prompts(names: list[str]) -> tuple[list[str], list[str]]:
    """A positive and a negated prompt per entity name, in the words radiology reports use."""
    return list(names), [f"no {name}" for name in names]


@torch.no_grad()
def image_scores(model: AlignmentModel, images: Tensor, transform: ImageTransform, entity_rows: list[int],
                 batch_size: int = 64) -> dict[str, Tensor]:
    """Scores [N, L] for the entities at `entity_rows`, from uint8 images [N, C, S, S]."""
    was_training = model.training
    model.eval()
    names = [model.entity_names[r] for r in entity_rows]
    positive, negative = prompts(names)
    text = model.encode_text(positive + negative).global_
    pos, neg = text[: len(names)], text[len(names):]
    scale = math.exp(min(float(model.logit_scale.detach()), math.log(100)))
    out: dict[str, list[Tensor]] = {"prompt": [], "entity": []}
    for start in range(0, len(images), batch_size):
        pixels = transform(images[start:start + batch_size].to(model.device).float() / 255, train=False)
        encoded = model.encode_image(pixels)
        pair = torch.stack([encoded.global_ @ pos.T, encoded.global_ @ neg.T], dim=-1) * scale
        out["prompt"].append(pair.softmax(-1)[..., 0].float().cpu())
        if model.decoder is not None:
            logits, _ = model.entities(encoded.local)
            out["entity"].append(logits[:, entity_rows].float().softmax(-1)[..., PRESENT].cpu())
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items() if v}


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The area under the ROC curve by the Mann–Whitney U statistic (ties count half); NaN when one class
    is missing."""
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def label_aucs(scores: Tensor, states: Tensor, labels: list[str]) -> dict[str, float]:
    """AUC per label over the images whose state is known (present against absent); labels with one
    class only in this split are left out."""
    result = {}
    for column, label in enumerate(labels):
        known = (states[:, column] == PRESENT) | (states[:, column] == ABSENT)
        value = auc(scores[known, column].numpy(), (states[known, column] == PRESENT).numpy())
        if not math.isnan(value):
            result[label] = value
    return result


def mean(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else float("nan")
