"""Soft contrastive targets from what images and reports say about entities, and knowledge word weights.

Each item's states (`alignment.states`) become two kinds of evidence per entity: presence π ∈ [0, 1] and
absence α ∈ [0, 1]. Present is (π, α) = (1, 0), absent (0, 1), uncertain (u, 1 − u) with u = 0.5 by
default (a hedged mention is a coin flip), unknown (0, 0): no evidence. The agreement of item i with item
j is the expected agreement of their evidence, summed over entities:

    A(i, j) = Σ_k  w_p·π_ik·π_jk + w_a·α_ik·α_jk − w_d·(π_ik·α_jk + α_ik·π_jk)

(w_p rewards shared findings, w_a shared explicit negatives, w_d penalises a finding stated on one side
and negated on the other). With the defaults w_p = 1, w_a = 0, w_d = 1, u = 0.5, per entity:

    image \\ text   present   absent   uncertain   unknown
    present          1        −1        0           0
    absent          −1         0       −0.5         0
    uncertain        0        −0.5     −0.25        0
    unknown          0         0        0           0

Shared negatives count nothing by default, as in MedCLIP (0·0 = 0): on exhaustively labelled images (NIH
states all 14 findings) and normal reports (every unmentioned label absent) a positive w_a sums to more
than a shared finding (13 × 0.5 against 1), so every image's target mass goes to the normal reports and
the image vectors collapse onto them; measured on the shared data with w_a = 0.5.

Uncertain against uncertain is not agreement (MedCLIP multiplies −1·−1 = +1); uncertain against present
is neutral, like silence. Targets are softmax_j(A(i, j) / temperature) over the columns of each row;
columns with equal evidence get equal mass. A row whose item shares no evidence with any column (no
entity known on both sides) carries no information: its target is its own pair, one-hot on the diagonal
(the batch is a batch of pairs; under independent pairing that partner is arbitrary).

Knowledge targets (`knowledge_targets`) first expand presence through the graph: the caller's
`entity_similarity[a, b]` ∈ [0, 1] says how much entity a counts as entity b (1 where a IS_A b,
else a clipped cosine of concept vectors), and an entity the item does not state gets
π_b = max_a π_a·S[a, b], so a present hydropneumothorax is a present pneumothorax and an uncertain
one counts at half weight. Stated entities keep their own evidence (an explicit "no pneumothorax" is not
overruled), and absence is not expanded. With S the identity the two kinds of targets are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignment.states import ABSENT, PRESENT, UNCERTAIN


@dataclass(frozen=True)
class StateAgreement:
    """Weights of the agreement table (module docstring) and the presence probability of an uncertain state."""
    present: float = 1.0    # w_p: both present
    absent: float = 0.0     # w_a: both explicitly absent (0, as MedCLIP: shared negatives would swamp shared findings)
    disagree: float = 1.0   # w_d: present on one side, absent on the other
    uncertain: float = 0.5  # u: presence probability of an uncertain mention


DEFAULT_AGREEMENT = StateAgreement()


def state_evidence(states: Tensor, uncertain: float = 0.5) -> tuple[Tensor, Tensor]:
    """(presence, absence) float32 [B, K] from integer states [B, K]; UNKNOWN gives (0, 0)."""
    present, absent, hedged = states == PRESENT, states == ABSENT, states == UNCERTAIN
    presence = present.float() + uncertain * hedged.float()
    absence = absent.float() + (1 - uncertain) * hedged.float()
    return presence, absence


def expand_states(states: Tensor, entity_similarity: Tensor, uncertain: float = 0.5) -> Tensor:
    """Soft presence [B, K] float32: stated entities keep their presence (present 1, uncertain `uncertain`,
    absent 0); an unknown entity b gets max_a presence_a · entity_similarity[a, b]."""
    presence, absence = state_evidence(states, uncertain)
    similarity = entity_similarity.to(device=states.device, dtype=torch.float32)
    implied = (presence.unsqueeze(2) * similarity).amax(dim=1)  # [B, K]: max over source entities a
    stated = (presence + absence) > 0
    return torch.where(stated, presence, implied)


def agreement_scores(row_presence: Tensor, row_absence: Tensor, column_presence: Tensor, column_absence: Tensor,
                     agreement: StateAgreement = DEFAULT_AGREEMENT) -> Tensor:
    """A(i, j) [R, C] of the module docstring, from the evidence of the row and the column items."""
    return (row_presence @ (agreement.present * column_presence - agreement.disagree * column_absence).T
            + row_absence @ (agreement.absent * column_absence - agreement.disagree * column_presence).T)


def soft_targets(row_evidence: tuple[Tensor, Tensor], column_evidence: tuple[Tensor, Tensor], temperature: float,
                 agreement: StateAgreement = DEFAULT_AGREEMENT) -> Tensor:
    """Row-softmax of A / temperature [B, B] from (presence, absence) of rows and columns, a one-hot on
    the diagonal for rows that share no evidence with any column."""
    rows, columns = row_evidence[0].shape[0], column_evidence[0].shape[0]
    if rows != columns:
        raise ValueError(f"soft targets are over a batch of pairs: got {rows} rows and {columns} columns")
    scores = agreement_scores(*row_evidence, *column_evidence, agreement)
    shared = (row_evidence[0] + row_evidence[1]) @ (column_evidence[0] + column_evidence[1]).T
    informative = (shared > 0).any(dim=1, keepdim=True)
    own = torch.eye(scores.shape[0], device=scores.device)
    return torch.where(informative, F.softmax(scores / temperature, dim=1), own)


def knowledge_targets(image_states: Tensor, text_states: Tensor, entity_similarity: Tensor, temperature: float,
                      agreement: StateAgreement = DEFAULT_AGREEMENT) -> Tensor:
    """Image → text targets [B, B] (rows sum to 1) with presence expanded through `entity_similarity` [K, K];
    the text → image targets are `knowledge_targets(text_states, image_states, ...)`."""
    def evidence(states: Tensor) -> tuple[Tensor, Tensor]:
        return (expand_states(states, entity_similarity, agreement.uncertain),
                state_evidence(states, agreement.uncertain)[1])
    return soft_targets(evidence(image_states), evidence(text_states), temperature, agreement)


def knowledge_word_weights(word_is_concept: Tensor, word_mask: Tensor, concept_weight: float) -> Tensor:
    """Weights [B, W] of words for GLoRIA's and MGCA's word-level losses: `concept_weight` for words inside
    a graph concept's mention, 1 for other words, 0 for padding, scaled per text to average 1 over its
    real words (so `concept_weight` = 1 gives GLoRIA's unweighted sum exactly)."""
    real = word_mask.float()
    weights = torch.where(word_is_concept, concept_weight, 1.0) * real
    mean = weights.sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True).clamp_min(1)
    return weights / mean.clamp_min(torch.finfo(weights.dtype).tiny)
