"""Linear probe: how much of the labels a frozen encoder's features hold, with few labelled images or all of them.

Features are the image encoder's own pooled vectors (before the projection into the shared space, as GLoRIA and
MGCA probe), standardised by the training subset's mean and deviation. One logistic regression per label, all
trained at once as one linear layer in torch (BCE over the images whose label is present or absent, plus an L2
penalty `weight_decay`·|W|², full-batch L-BFGS for `steps` iterations): small, deterministic, no sklearn.

Training subsets are drawn by patient (`subset`): patients in an order fixed by `seed`, taken until the subset
holds `fraction` of the training images, then further patients until every label has `min_positives` positive
images where the whole training split has them; 100% is the whole training split. AUC per label on the test
images (labels with one class there left out), and their mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .states import ABSENT, PRESENT
from .zeroshot import label_aucs, mean

FRACTIONS = (0.01, 0.1, 1.0)
MIN_POSITIVES = 3


def subset(patients: list[str], states: Tensor, fraction: float, seed: int = 0, min_positives: int = MIN_POSITIVES) -> list[int]:
    """Rows of the training images to label (see the module docstring), ascending."""
    by_patient: dict[str, list[int]] = {}
    for row, patient in enumerate(patients):
        by_patient.setdefault(patient, []).append(row)
    names = sorted(by_patient)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    if fraction >= 1:
        return sorted(r for rows in by_patient.values() for r in rows)
    positive = (states == PRESENT).numpy()
    available = np.minimum(positive.sum(0), min_positives)
    target = max(1, round(fraction * len(patients)))
    chosen: list[int] = []
    have = np.zeros(positive.shape[1], dtype=int)
    for patient in order:
        rows = by_patient[patient]
        enough = len(chosen) >= target
        if enough and (have >= available).all():
            break
        if enough and not (positive[rows].sum(0)[have < available] > 0).any():
            continue  # past the target, only patients that bring a missing positive
        chosen += rows
        have += positive[rows].sum(0)
    return sorted(chosen)


def fit(features: Tensor, states: Tensor, steps: int = 300, weight_decay: float = 1e-2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(weights [D, L], bias [L], feature mean [D], feature std [D]) of logistic regressions on `features` [n, D]
    against `states` [n, L] (present = 1, absent = 0, other states ignored)."""
    x = features.double()
    centre, scale = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - centre) / scale
    known = ((states == PRESENT) | (states == ABSENT)).double()
    target = (states == PRESENT).double()
    weights = torch.zeros(x.shape[1], states.shape[1], dtype=torch.float64, requires_grad=True)
    prior = ((target * known).sum(0) + 0.5) / (known.sum(0) + 1)
    bias = torch.log(prior / (1 - prior)).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weights, bias], lr=1, max_iter=steps, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        optimizer.zero_grad()
        losses = F.binary_cross_entropy_with_logits(x @ weights + bias, target, reduction="none") * known
        loss = losses.sum() / known.sum().clamp_min(1) + weight_decay * (weights ** 2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a few hundred tiny steps: waking a thread pool for each costs more than it brings
    try:
        with torch.enable_grad():
            optimizer.step(closure)
    finally:
        torch.set_num_threads(threads)
    return weights.detach(), bias.detach(), centre, scale


def predict(features: Tensor, model: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    weights, bias, centre, scale = model
    return torch.sigmoid(((features.double() - centre) / scale) @ weights + bias).float()


def linear_probe(features: Tensor, states: Tensor, patients: list[str], train_rows: list[int], test_rows: list[int],
                 labels: list[str], fractions: tuple[float, ...] = FRACTIONS, seed: int = 0,
                 progress: bool = False) -> dict[str, dict]:
    """{"1%": {"auc": {label: x}, "mean_auc": x, "train_images": n, "train_patients": p, "test_images": m}, ...}."""
    from tqdm import tqdm

    result = {}
    train_states = states[train_rows]
    for fraction in tqdm(fractions, desc="linear probe", unit=" fraction", disable=not progress):
        picked = [train_rows[i] for i in subset([patients[r] for r in train_rows], train_states, fraction, seed)]
        model = fit(features[picked], states[picked])
        aucs = label_aucs(predict(features[test_rows], model), states[test_rows], labels)
        result[f"{fraction * 100:g}%"] = {"auc": aucs, "mean_auc": mean(aucs), "train_images": len(picked),
                                          "train_patients": len({patients[r] for r in picked}), "test_images": len(test_rows)}
    return result
