"""GLoRIA (Huang et al. 2021): global–local alignment of report words with image regions.

Local, for every (text i, image j) of the batch at once:
    a_ijwn = softmax_n(γ1 · cos(word_iw, region_jn))                 attention of each word over regions
    c_ijw  = Σ_n a_ijwn · region_jn                                   the word's visual context
    R(i,j) = (1/γ2) · log Σ_w ω_iw · exp(γ2 · cos(word_iw, c_ijw))    weighted log-sum-exp over real words
    L_local = ½[CE(γ3·R, arange) + CE(γ3·Rᵀ, arange)]
Global: L_global = ½[CE(γ3·cos(I, T), arange) both ways] (ClipLoss with s = γ3).

Deviations from the reference code (marshuang80/gloria), on purpose:
- one softmax over regions, as in the paper; the code first softmaxes over words and then over regions
  of γ1 times that (ControlGAN's attention), which makes a word's attention depend on the other words;
- the attention reads cosines rather than raw dot products, so it does not depend on feature norms
  (the code's word softmax bounds its region logits to [0, γ1]; cosines bound them to [−γ1, γ1]);
- R has the paper's 1/γ2; the code omits it, so its local logits are γ2 (= 5) times larger than these
  (set gamma3 = 50 for the code's scale);
- each CE pair is averaged (the code sums the two directions), a factor 2 absorbed by the weights;
- the word weights ω (knowledge: words of graph concepts count more; `alignment.targets.
  knowledge_word_weights`) are medkg's; ω = 1 on real words, 0 on padding is the paper's sum.
Under DDP the local term compares this process's texts and images only (the reference is single-GPU;
gathering words and regions of every process would cost B·W·D + B·N·D per step); the global term
gathers like ClipLoss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .clip import ClipLoss, full_precision


class GloriaLoss(nn.Module):
    """forward(words [B, W, D], word_mask [B, W] bool (True = real word), regions [B, N, D], image_global
    [B, D], text_global [B, D], word_weights [B, W] | None) → {"local", "global", "loss", "attention"}.
    Features need not be normalised. "attention" [B, W, N] is each text's word-over-region attention on its
    own image (zero rows for padding words), detached, for explanations. Every text needs a real word.

    The B·B·W·(N + D) intermediate floats of the local term are computed in chunks of images when they
    exceed `max_elements`, each chunk recomputed in the backward pass (activation checkpointing), so
    memory stays near one chunk; the result is the same as in one piece.
    """

    def __init__(self, gamma1: float = 4.0, gamma2: float = 5.0, gamma3: float = 10.0, local_weight: float = 1.0,
                 global_weight: float = 1.0, max_elements: int = 2**26, local_loss: bool = False,
                 gather_with_grad: bool = True) -> None:
        super().__init__()
        self.gamma1, self.gamma2, self.gamma3 = gamma1, gamma2, gamma3
        self.local_weight, self.global_weight, self.max_elements = local_weight, global_weight, max_elements
        self.global_clip = ClipLoss(local_loss, gather_with_grad)

    def forward(self, words: Tensor, word_mask: Tensor, regions: Tensor, image_global: Tensor, text_global: Tensor,
                word_weights: Tensor | None = None) -> dict[str, Tensor]:
        local, attention = self.local(words, word_mask, regions, word_weights)
        global_ = self.global_clip(F.normalize(image_global, dim=-1), F.normalize(text_global, dim=-1),
                                   image_global.new_tensor(math.log(self.gamma3)))
        return {"local": local, "global": global_, "loss": self.local_weight * local + self.global_weight * global_,
                "attention": attention}

    def local(self, words: Tensor, word_mask: Tensor, regions: Tensor,
              word_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(L_local, matched-pair attention [B, W, N] detached)."""
        with full_precision(words):
            words, regions = words.float(), regions.float()
            weights = word_mask.float() if word_weights is None else word_weights.float() * word_mask
            log_weights = torch.where(weights > 0, weights.log(), -math.inf)
            unit_words = F.normalize(words, dim=-1)
            batch, length = words.shape[:2]
            per_image = batch * length * (regions.shape[1] + regions.shape[2])
            chunk = max(1, self.max_elements // per_image)
            relevance, attention = [], []
            for first in range(0, batch, chunk):
                part = (unit_words, log_weights, regions[first:first + chunk], first)
                if chunk < batch and torch.is_grad_enabled():
                    r, a = checkpoint(self._relevance, *part, use_reentrant=False)
                else:
                    r, a = self._relevance(*part)
                relevance.append(r)
                attention.append(a)
            logits = self.gamma3 * torch.cat(relevance, dim=1)  # [B texts, B images]
            labels = torch.arange(batch, device=words.device)
            local = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            return local, torch.cat(attention).detach() * word_mask.unsqueeze(-1)

    def _relevance(self, unit_words: Tensor, log_weights: Tensor, regions: Tensor, first: int) -> tuple[Tensor, Tensor]:
        """R [B, C] of all texts against the C images of `regions` (images first .. first + C − 1 of the
        batch), and the attention [C, W, N] of those images' own texts."""
        cosines = torch.einsum("iwd,jnd->ijwn", unit_words, F.normalize(regions, dim=-1))
        attention = (self.gamma1 * cosines).softmax(dim=-1)
        context = torch.einsum("ijwn,jnd->ijwd", attention, regions)
        agreement = (unit_words.unsqueeze(1) * F.normalize(context, dim=-1)).sum(dim=-1)  # [B, C, W]
        relevance = torch.logsumexp(self.gamma2 * agreement + log_weights.unsqueeze(1), dim=-1) / self.gamma2
        own = torch.arange(regions.shape[0], device=regions.device)
        return relevance, attention[own + first, own]
