"""An entity–region contrast: each entity's own attention over an image's regions, trained from image labels.

Why: KAD's decoder reads every entity through cross-attention inside a residual stream the entities share.
Trained from scratch on the shared NIH images, its last layer attends one place per image whatever the
entity (`docs/BENCHMARKS.md`: 97% of pairs of findings peak at the same region), so its maps say nothing per
finding. Here each entity attends the regions with its own query, by GLoRIA's local attention with the
entity in the word's place (`EntityDecoder.region_attention`), and what it attends must tell the images
that hold the entity from those that do not: a multiple-instance contrast over the batch, image labels only.

As implemented, q_k the decoder's query of entity k (its query MLP), m_ir image i's regions (the decoder's
projected, layer-normalised memory), γ = `decoder.region_gamma`, τ = `scale`:

    a_ikr = softmax_r(γ · cos(q_k, m_ir))             the entity's map over image i
    s_ik  = cos(Σ_r a_ikr m_ir, q_k)                  how much what it attends looks like the entity
    L     = mean over (i, k) with k PRESENT in i, and some image of the batch with k ABSENT, of
            softplus(logsumexp_{n: k ABSENT in n} τ·s_nk − τ·s_ik)

softplus(logsumexp(negatives) − positive) = −log σ(...) is the pairwise logistic loss against the hardest
negatives in soft form; UNCERTAIN and UNKNOWN cells are neither positives nor negatives. Under DDP the
scores and states of every process are gathered (scores with their gradient), so each process computes the
global batch's loss and DDP's averaging gives the one-process gradient, as `ClipLoss` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignment.distributed import gather_features
from alignment.states import ABSENT, PRESENT

from .clip import full_precision


class EntityRegionContrast(nn.Module):
    """forward(scores [B, K] = s_ik of `EntityDecoder.region_attention`, states [B, K]) → the scalar L above;
    0 (with a gradient path) when no entity of the batch has both a positive and a negative image."""

    def __init__(self, scale: float = 10.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, scores: Tensor, states: Tensor) -> Tensor:
        with full_precision(scores):
            logits = self.scale * gather_features(scores.float(), with_grad=True)
            states = gather_features(states)
            positive, negative = states == PRESENT, states == ABSENT
            entities = positive.any(0) & negative.any(0)  # the entities this batch can contrast
            if not entities.any():
                return logits.sum() * 0.0
            logits, positive, negative = logits[:, entities], positive[:, entities], negative[:, entities]
            negatives = torch.logsumexp(logits.masked_fill(~negative, float("-inf")), dim=0)  # [K']
            return F.softplus(negatives[None] - logits)[positive].mean()
