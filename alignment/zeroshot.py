"""Zero-shot scores of images against label prompts, and the AUC that judges them (a simple version
for validation during training; the evaluation command builds on it).

Each image is scored on its own, never normalised across the evaluation batch (GLoRIA z-scores each
class over the batch, so its scores depend on which images share it). Two scores per label:
- `prompt`: the softmax, at the model's own temperature, of the image's similarity to a positive prompt
  ("pleural effusion") against a negative one ("no pleural effusion"): the CLIP way, open vocabulary;
- `entity`: the entity decoder's probability that the label's entity is present, for models that have
  one. The decoder learns from image labels of the training split: this score is zero-shot only for
  entities no training image was labelled with, and is reported apart from `prompt` for that reason.
`image_scores` uses bare-name prompts (training's validation); `medkg evaluate` builds its prompts from the graph
(`alignment.prompts`) and adds percentile bootstrap intervals (`bootstrap_aucs`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor
from tqdm import tqdm

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
            logits, _ = model.entities(encoded.local, summary=encoded.pooled)
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


def bootstrap_aucs(scores: np.ndarray, states: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95,
                   progress: bool = False) -> dict[str, np.ndarray]:
    """AUC per label with a percentile bootstrap interval, and the interval of their mean.

    `scores` [N, L] and `states` [N, L] (`alignment.states` values; a label's AUC reads the images whose state
    is PRESENT or ABSENT). Images are resampled with replacement, `resamples` times from a generator seeded with
    `seed`, jointly for all labels (one resample gives every label's AUC, and the mean over labels); the interval
    is the (1 - level) / 2 and 1 - (1 - level) / 2 percentiles of the resampled AUCs, resamples in which a label
    has one class only left out. Exact and vectorised: a resample is a count per image, and the Mann–Whitney
    statistic is summed over groups of tied scores (ties count half), so no resample is sorted again.

    {"auc": [L], "low": [L], "high": [L], "mean_low": (), "mean_high": ()}; NaN where a label has one class."""
    scores, states = np.asarray(scores, dtype=np.float64), np.asarray(states)
    n, labels = scores.shape
    if labels == 0 or n == 0:
        empty = np.full(labels, np.nan)
        return {"auc": empty, "low": empty.copy(), "high": empty.copy(), "mean_low": np.nan, "mean_high": np.nan}
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // max(n, 1)))
    point = np.array([_weighted_aucs(np.ones((1, n)), scores[:, j], states[:, j])[0] for j in range(labels)])
    sampled = np.full((resamples, labels), np.nan)
    done = 0
    with tqdm(total=resamples, desc="bootstrap", unit=" resamples", disable=not progress, mininterval=0.5) as bar:
        while done < resamples:
            size = min(chunk, resamples - done)
            draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
            counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
            for j in range(labels):
                sampled[done:done + size, j] = _weighted_aucs(counts, scores[:, j], states[:, j])
            done += size
            bar.update(size)
    tail = (1 - level) / 2 * 100
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (one class only) give NaN, as they should
        low, high = np.nanpercentile(sampled, [tail, 100 - tail], axis=0)
        means = np.nanmean(sampled[:, ~np.isnan(point)], axis=1) if (~np.isnan(point)).any() else np.full(resamples, np.nan)
        mean_low, mean_high = np.nanpercentile(means, [tail, 100 - tail])
    low[np.isnan(point)] = high[np.isnan(point)] = np.nan
    return {"auc": point, "low": low, "high": high, "mean_low": mean_low, "mean_high": mean_high}


def _weighted_aucs(counts: np.ndarray, scores: np.ndarray, states: np.ndarray) -> np.ndarray:
    """AUC [B] of one label for each row of image counts [B, N] (an image counted c times is c images)."""
    known = (states == PRESENT) | (states == ABSENT)
    s, positive, c = scores[known], states[known] == PRESENT, counts[:, known]
    if positive.all() or not positive.any():
        return np.full(len(counts), np.nan)
    order = np.argsort(s, kind="stable")
    s, positive, c = s[order], positive[order], c[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores, ascending
    pos = np.add.reduceat(c * positive, starts, axis=1)
    neg = np.add.reduceat(c * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each group
    pairs = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + neg / 2)).sum(1) / pairs, np.nan)
