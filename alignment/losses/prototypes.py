"""Prototype clustering shared by images and reports: MGCA's cross-modal prototype alignment (CPA), and
medkg's variant whose first prototypes start at, and stay near, the graph's disease concepts.

Prototypes are L2-normalised in the forward pass (MGCA renormalises the weight in place before each
step; normalising functionally gives the same scores, leaves the parameter alone, which DDP prefers, and
its gradient is the tangential part). Each process averages over its own rows; the Sinkhorn assignments
are global, so DDP's averaging over equal shares gives the one-process gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .clip import full_precision
from .sinkhorn import swapped_prediction


def prototype_alignment(image: Tensor, text: Tensor, prototypes: Tensor, epsilon: float = 0.05, iterations: int = 3,
                        temperature: float = 0.2) -> Tensor:
    """MGCA's CPA: `swapped_prediction` of the cosine scores of `image` and `text` [B, D] (any norm)
    against `prototypes` [P, D] (any norm)."""
    with full_precision(image):
        centres = F.normalize(prototypes.float(), dim=-1)
        image_scores = F.normalize(image.float(), dim=-1) @ centres.T
        text_scores = F.normalize(text.float(), dim=-1) @ centres.T
        return swapped_prediction(image_scores, text_scores, epsilon, iterations, temperature)


def anchor_penalty(prototypes: Tensor, anchors: Tensor) -> Tensor:
    """mean_k (1 − cos(prototype_k, anchor_k)) over the first len(anchors) prototypes (the rest are free)."""
    with full_precision(prototypes):
        anchored = prototypes[: anchors.shape[0]].float()
        return (1 - F.cosine_similarity(anchored, anchors.float(), dim=-1)).mean()


class KnowledgePrototypes(nn.Module):
    """P prototypes in the shared space, trained by swapped prediction between the image and the text view
    (MGCA's CPA; `anchors=None` is exactly CPA), the first A of them initialised at `anchors` [A, dim]
    (the disease concepts' vectors, projected to `dim` by the caller) and held near them by
    anchor_weight · `anchor_penalty`.

    forward(image [B, dim], text [B, dim], any norm) → {"swap", "anchor", "loss" = swap + anchor_weight·anchor}.
    MGCA freezes the prototypes during the first epoch: the trainer's business (requires_grad_).
    """

    def __init__(self, num_prototypes: int, dim: int, anchors: Tensor | None = None, anchor_weight: float = 1.0,
                 epsilon: float = 0.05, iterations: int = 3, temperature: float = 0.2) -> None:
        super().__init__()
        init = F.normalize(torch.randn(num_prototypes, dim), dim=-1)
        if anchors is not None:
            if anchors.ndim != 2 or anchors.shape[1] != dim or anchors.shape[0] > num_prototypes:
                raise ValueError(f"anchors must be [A <= {num_prototypes}, {dim}], got {tuple(anchors.shape)}")
            anchors = F.normalize(anchors.detach().float(), dim=-1)
            init[: anchors.shape[0]] = anchors
        self.register_buffer("anchors", anchors)
        self.prototypes = nn.Parameter(init)
        self.anchor_weight, self.epsilon, self.iterations, self.temperature = anchor_weight, epsilon, iterations, temperature

    def forward(self, image: Tensor, text: Tensor) -> dict[str, Tensor]:
        swap = prototype_alignment(image, text, self.prototypes, self.epsilon, self.iterations, self.temperature)
        anchor = anchor_penalty(self.prototypes, self.anchors) if self.anchors is not None else swap.new_zeros(())
        return {"swap": swap, "anchor": anchor, "loss": swap + self.anchor_weight * anchor}
