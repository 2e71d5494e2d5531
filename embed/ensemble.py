"""Structure and text together: a weighted sum of two link predictors' log-probabilities over the entities.

Each model's scores for a query become a distribution over all entities (log-softmax), so models whose
scores live on different scales (RotatE's margin minus a distance, the text model's scaled cosine) add
up; the weight is chosen on the validation split, never on test (`sweep`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .evaluate import ScoreAll, rank_metrics, realistic_ranks
from .models import LinkPredictor
from .triples import KnownTriples, Triples


def scorer(model: LinkPredictor) -> ScoreAll:
    """The model's all-entity scores with its entity table computed once (a GNN encoder, the text head's
    candidate vectors), as the evaluator uses them."""
    model.eval()
    with torch.no_grad():
        table = model.entity_table()
    return lambda anchors, relations, predict_tail: model.score_all(anchors, relations, predict_tail, table)


def combine(first: ScoreAll, second: ScoreAll, weight: float) -> ScoreAll:
    """`weight` * log p_first + (1 - weight) * log p_second, per query over all entities."""

    def score_all(anchors: Tensor, relations: Tensor, predict_tail: bool) -> Tensor:
        a = torch.log_softmax(first(anchors, relations, predict_tail).float(), dim=1)
        b = torch.log_softmax(second(anchors, relations, predict_tail).float(), dim=1)
        return weight * a + (1 - weight) * b

    return score_all


@torch.no_grad()
def sweep(first: ScoreAll, second: ScoreAll, triples: Triples, known: KnownTriples,
          weights: Sequence[float] = tuple(i / 10 for i in range(11)), batch_size: int = 256) -> dict[float, float]:
    """Filtered MRR on `triples` (the validation split) of every weight, both models scoring each batch once."""
    ranks: dict[float, list[Tensor]] = {w: [] for w in weights}
    for start in range(0, len(triples), batch_size):
        h, r, t = (x[start:start + batch_size] for x in (triples.heads, triples.relations, triples.tails))
        for anchors, targets, predict_tail, (rows, entities) in ((h, t, True, known.tails(h, r)), (t, h, False, known.heads(r, t))):
            a = torch.log_softmax(first(anchors, r, predict_tail).float(), dim=1)
            b = torch.log_softmax(second(anchors, r, predict_tail).float(), dim=1)
            for w in weights:
                ranks[w].append(realistic_ranks(w * a + (1 - w) * b, targets, rows, entities))
    return {w: rank_metrics(torch.cat(parts))["mrr"] for w, parts in ranks.items()}
