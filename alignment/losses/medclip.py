"""Soft-target CLIP: MedCLIP's semantic targets from entity states, and medkg's knowledge targets.

MedCLIP (Wang et al. 2022) replaces CLIP's identity with Y = softmax_row(L_img · L_txtᵀ) over CheXpert
label vectors (1 / 0 / −1), with no temperature, and trains soft cross-entropy both ways. Two deviations,
both in `alignment.targets`: states are read as evidence of presence and absence (so shared uncertainty
is not agreement, where MedCLIP's −1·−1 = +1 is, and a finding negated on one side and stated on the
other is disagreement, where MedCLIP's 1·0 = 0 is silence), and a temperature (1 = MedCLIP).
The targets only need each side's states, so they also relate images and reports drawn independently.
"""

from __future__ import annotations

from torch import Tensor, nn

from alignment.distributed import gather_features
from alignment.targets import DEFAULT_AGREEMENT, StateAgreement, knowledge_targets, soft_targets, state_evidence

from .clip import ClipLoss


def semantic_targets(image_states: Tensor, text_states: Tensor, temperature: float = 1.0,
                     agreement: StateAgreement = DEFAULT_AGREEMENT) -> Tensor:
    """Image → text targets [B, B] (rows sum to 1) from integer states [B, K] of both sides: the row-softmax
    of the agreement table in `alignment.targets` over temperature; rows sharing no known entity with any
    column are one-hot on their own pair. The text → image targets are `semantic_targets(text_states,
    image_states, ...)` (the agreement is symmetric, the row normalisation is not)."""
    return soft_targets(state_evidence(image_states, agreement.uncertain), state_evidence(text_states, agreement.uncertain),
                        temperature, agreement)


class MedClipLoss(nn.Module):
    """ClipLoss with MedCLIP's semantic targets, computed over the global batch.

    forward(image [B, D] unit, text [B, D] unit, logit_scale (log), image_states [B, K], text_states [B, K])
    → scalar. Under DDP the states are gathered first, so every process builds the same global targets and
    the loss matches one process on the whole batch (see `ClipLoss` for `local_loss`, `gather_with_grad`).
    """

    def __init__(self, temperature: float = 1.0, agreement: StateAgreement = DEFAULT_AGREEMENT,
                 local_loss: bool = False, gather_with_grad: bool = True) -> None:
        super().__init__()
        self.temperature, self.agreement = temperature, agreement
        self.clip = ClipLoss(local_loss, gather_with_grad)

    def targets(self, row_states: Tensor, column_states: Tensor) -> Tensor:
        return semantic_targets(row_states, column_states, self.temperature, self.agreement)

    def forward(self, image: Tensor, text: Tensor, logit_scale: Tensor, image_states: Tensor, text_states: Tensor) -> Tensor:
        image_states, text_states = gather_features(image_states), gather_features(text_states)
        return self.clip(image, text, logit_scale, self.targets(image_states, text_states),
                         self.targets(text_states, image_states))


class KnowledgeClipLoss(MedClipLoss):
    """MedClipLoss whose targets see the graph: `alignment.targets.knowledge_targets` with the caller's
    `entity_similarity` [K, K] (a buffer: it follows the module's device, and is not saved)."""

    def __init__(self, entity_similarity: Tensor, temperature: float = 1.0, agreement: StateAgreement = DEFAULT_AGREEMENT,
                 local_loss: bool = False, gather_with_grad: bool = True) -> None:
        super().__init__(temperature, agreement, local_loss, gather_with_grad)
        self.register_buffer("entity_similarity", entity_similarity.float().clone(), persistent=False)

    def targets(self, row_states: Tensor, column_states: Tensor) -> Tensor:
        return knowledge_targets(row_states, column_states, self.entity_similarity, self.temperature, self.agreement)
