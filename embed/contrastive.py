"""Symmetric InfoNCE with soft targets (KAD, MedCLIP): in a batch of (left, right) pairs, every pair that
names the same concept is a positive, not only the pair on the diagonal. With hard targets, two synonyms
of one concept drawn into the same batch would be pushed apart as negatives of each other."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SoftInfoNCE(nn.Module):
    """Cross-entropy of the scaled cosine logits against target rows that spread one unit evenly over the
    pairs of the same concept, averaged over both directions (left to right, right to left).

    The scale is 1 / temperature, learnable as CLIP's `logit_scale` (kept in log space, capped at 100)."""

    def __init__(self, temperature: float = 0.05, learnable: bool = False, max_scale: float = 100.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)), requires_grad=learnable)
        self.max_scale = max_scale

    def forward(self, left: Tensor, right: Tensor, labels: Tensor) -> Tensor:
        """`left`, `right`: unit vectors [B, d], pair i being (left[i], right[i]); `labels`: [B] concept ids."""
        logits = self.logit_scale.exp().clamp(max=self.max_scale) * left @ right.T
        targets = soft_targets(labels).to(logits.dtype)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def soft_targets(labels: Tensor) -> Tensor:
    """[B, B]: row i is the indicator of the pairs sharing pair i's label, normalised to sum to one
    (symmetric, so it serves both directions)."""
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)).float()
    return same / same.sum(1, keepdim=True)
