"""MGCA (Wang et al. 2022): instance-wise (ITA), token-wise (CTA) and prototype (CPA) alignment.

- ITA is `ClipLoss` at MGCA's fixed temperature 0.07.
- CTA, words side, within each report–image pair, with τ = 0.1 and every feature L2-normalised:
      o_w = normalize(Σ_n softmax_n(w·p_n / τ) · p_n)       each word's attended patch summary
      S   = w · oᵀ / τ                                      [W, W]: word i against the summary of word j
      L_words = Σ_w ω_w · ½[CE(S_w,:, w) + CE(S_:,w, w)]    ω: token weights, summing to 1 per sample
  and the patch side symmetric (patches attend over real words). L_CTA = ½(L_words + L_patches).
  Padding words are left out of both softmaxes and get no weight (MGCA's word-side padding mask is
  commented out, so padding words act as negatives). Token weights come from the caller: MGCA uses the
  last layer's [CLS] attention, clipped at its 10th/90th percentiles, for words, ViT [CLS] attention or
  uniform (CNN) for patches; medkg passes knowledge weights for words (`alignment.targets.
  knowledge_word_weights`). None is uniform over real tokens.
- CPA is `KnowledgePrototypes` without anchors (Sinkhorn balanced over the global batch under DDP);
  `alignment.objective.Objective` composes the three from `configs/mgca.yaml`.
MGCA sums the two directions of ITA and the two sides of CTA; here each term averages them, so MGCA's
λ = 1 / 1 / 1 corresponds to weights 2 / 2 / 1 here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .clip import full_precision


class TokenAlignmentLoss(nn.Module):
    """MGCA's CTA. forward(words [B, W, D], word_mask [B, W] bool (True = real word), patches [B, N, D],
    word_weights [B, W] | None, patch_weights [B, N] | None), any norm → {"words", "patches", "loss"}."""

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, words: Tensor, word_mask: Tensor, patches: Tensor, word_weights: Tensor | None = None,
                patch_weights: Tensor | None = None) -> dict[str, Tensor]:
        patch_mask = torch.ones(patches.shape[:2], dtype=torch.bool, device=patches.device)
        words_side = self._side(words, word_mask, word_weights, patches, patch_mask)
        patches_side = self._side(patches, patch_mask, patch_weights, words, word_mask)
        return {"words": words_side, "patches": patches_side, "loss": (words_side + patches_side) / 2}

    def _side(self, queries: Tensor, query_mask: Tensor, query_weights: Tensor | None, keys: Tensor,
              key_mask: Tensor) -> Tensor:
        """Σ_q ω_q · ½[CE(S_q,:, q) + CE(S_:,q, q)], averaged over the batch, for queries attending over keys."""
        with full_precision(queries):
            q, k = F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1)
            attention = (q @ k.transpose(1, 2) / self.temperature).masked_fill(~key_mask.unsqueeze(1), -math.inf)
            summary = F.normalize(attention.softmax(dim=-1) @ k, dim=-1)
            similarity = q @ summary.transpose(1, 2) / self.temperature  # [B, Q, Q]
            batch, length = query_mask.shape
            own = torch.eye(length, dtype=torch.bool, device=q.device)
            allowed = query_mask.unsqueeze(1) | own  # padding columns out; a padding row keeps its own target
            labels = torch.arange(length, device=q.device).repeat(batch)

            def cross_entropy(logits: Tensor) -> Tensor:
                logits = logits.masked_fill(~allowed, -math.inf).reshape(batch * length, length)
                return F.cross_entropy(logits, labels, reduction="none").reshape(batch, length)

            weights = query_mask.float() if query_weights is None else query_weights.float() * query_mask
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
            per_token = (cross_entropy(similarity) + cross_entropy(similarity.transpose(1, 2))) / 2
            return (weights * per_token).sum(dim=1).mean()
