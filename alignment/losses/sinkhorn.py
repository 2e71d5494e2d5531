"""Sinkhorn–Knopp equipartition and SwAV's swapped prediction, shared by MGCA's cross-modal prototype
alignment and the knowledge-anchored prototypes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alignment.distributed import all_reduce_max, all_reduce_sum, world

from .clip import full_precision


def sinkhorn(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Soft assignments [B, P] of this process's rows to P prototypes, each row summing to 1, the
    prototypes sharing the *global* batch equally (SwAV's Sinkhorn–Knopp, as in MGCA and SwAV).

    Q = exp(z / ε) over the global batch [B_global, P], normalised to total 1; then `iterations` times:
    each prototype's column scaled to total 1/P, each sample's row to 1/B_global. Rows are returned
    rescaled to sum to 1. The column totals are all-reduced over processes, so W processes holding
    slices of a batch get the slices of one process's assignments on the whole batch (MGCA picks its
    Sinkhorn before DDP exists and so always balances per process). exp runs after subtracting the
    global maximum of z, a constant factor that the first normalisation removes; no gradient.
    """
    with torch.no_grad(), full_precision(scores):
        z = scores.detach().float()
        rows = z.shape[0] * world()[1]
        tiny = torch.finfo(z.dtype).tiny
        q = torch.exp((z - all_reduce_max(z.max())) / epsilon)
        q /= all_reduce_sum(q.sum())
        for _ in range(iterations):
            q /= all_reduce_sum(q.sum(dim=0, keepdim=True)).clamp_min(tiny) * q.shape[1]
            q /= q.sum(dim=1, keepdim=True).clamp_min(tiny) * rows
        return q / q.sum(dim=1, keepdim=True).clamp_min(tiny)


def swapped_prediction(image_scores: Tensor, text_scores: Tensor, epsilon: float = 0.05, iterations: int = 3,
                       temperature: float = 0.2) -> Tensor:
    """½[−Σ q_img · log p_txt − Σ q_txt · log p_img], averaged over this process's rows, with
    q = sinkhorn(z, ε) (no gradient) and p = softmax(z / temperature), z the scores [B, P] of each view
    against the prototypes: each modality predicts the other's balanced prototype assignment."""
    with full_precision(image_scores):
        image_scores, text_scores = image_scores.float(), text_scores.float()
        image_codes = sinkhorn(image_scores, epsilon, iterations)
        text_codes = sinkhorn(text_scores, epsilon, iterations)
        image_to_text = -(image_codes * (text_scores / temperature).log_softmax(dim=1)).sum(dim=1).mean()
        text_to_image = -(text_codes * (image_scores / temperature).log_softmax(dim=1)).sum(dim=1).mean()
        return (image_to_text + text_to_image) / 2
