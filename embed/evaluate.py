"""Filtered link-prediction metrics in the standard protocol (Bordes et al., 2013).

Every test triple (h, r, t) gives two queries, (h, r, ?) and (?, r, t). The true entity is ranked among
all entities by score, after every other entity that makes a known true triple (train, valid or test)
is removed: the filtered setting, in which a model is not penalised for ranking another correct answer
first. Ties use the realistic rank, the mean of the optimistic and the pessimistic rank
(1 + #higher + #equal / 2), as PyKEEN does by default, so a model that scores everything alike ranks in
the middle rather than first. MRR is the mean of 1 / rank; Hits@k is the share of ranks <= k; both over
head and tail queries together, and also per side and per relation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from .models import LinkPredictor
from .triples import KnownTriples, Triples

HITS_AT = (1, 3, 10)


ScoreAll = Callable[[Tensor, Tensor, bool], Tensor]
"""(anchors, relations, predict_tail) -> [batch, num_entities] scores: any model can be ranked the same way."""


@torch.no_grad()
def filtered_ranks(model: LinkPredictor | ScoreAll, triples: Triples, known: KnownTriples, batch_size: int = 256,
                   progress: bool = False) -> tuple[Tensor, Tensor]:
    """Realistic filtered ranks (float, 1 = best) of the true tail and of the true head of every triple.

    Each batch scores all entities at once: a [batch, num_entities] matrix per side. `model` is a
    `LinkPredictor` (its encoder runs once) or a `ScoreAll` function, e.g. another library's model."""
    if not isinstance(model, LinkPredictor):
        return _ranks(model, triples, known, batch_size, progress, torch.device("cpu"))
    was_training = model.training
    model.eval()
    table = model.entity_table()
    try:
        return _ranks(partial(model.score_all, table=table), triples, known, batch_size, progress, table.device)
    finally:
        model.train(was_training)


def _ranks(score_all: ScoreAll, triples: Triples, known: KnownTriples, batch_size: int, progress: bool,
           device: torch.device) -> tuple[Tensor, Tensor]:
    tail_ranks, head_ranks = [], []
    for start in tqdm(range(0, len(triples), batch_size), desc="ranking", unit="batch", disable=not progress, leave=False):
        h, r, t = (x[start:start + batch_size].to(device) for x in (triples.heads, triples.relations, triples.tails))
        tail_ranks.append(realistic_ranks(score_all(h, r, True), t, *known.tails(h, r)))
        head_ranks.append(realistic_ranks(score_all(t, r, False), h, *known.heads(r, t)))
    return torch.cat(tail_ranks).cpu(), torch.cat(head_ranks).cpu()


def realistic_ranks(scores: Tensor, targets: Tensor, known_rows: Tensor, known_entities: Tensor) -> Tensor:
    """Filtered realistic ranks of `targets` in [batch, num_entities] `scores`, with
    the (row, entity) pairs of known true answers removed."""
    scores = torch.nan_to_num(scores, nan=-torch.inf)  # a diverged model ranks last, not first
    true = scores.gather(1, targets.unsqueeze(1))
    scores[known_rows, known_entities] = -torch.inf  # the target too: it is a known triple
    higher = (scores > true).sum(1)
    equal = (scores == true).sum(1)
    return 1.0 + higher + equal / 2.0


def rank_metrics(ranks: Tensor) -> dict[str, float]:
    """MRR, mean rank and Hits@1/3/10 of a set of ranks, and their count."""
    ranks = ranks.double()
    out = {"mrr": float((1.0 / ranks).mean()) if len(ranks) else 0.0,
           "mean_rank": float(ranks.mean()) if len(ranks) else 0.0}
    out.update({f"hits@{k}": float((ranks <= k).double().mean()) if len(ranks) else 0.0 for k in HITS_AT})
    out["count"] = len(ranks)
    return out


def evaluate(model: LinkPredictor | ScoreAll, triples: Triples, known: KnownTriples, batch_size: int = 256,
             per_relation: bool = False, progress: bool = False) -> dict[str, Any]:
    """Metrics over head and tail queries together (top level), per side (`tail`, `head`) and, when asked,
    per relation name (`per_relation`, both sides, relations with test triples only)."""
    tail, head = filtered_ranks(model, triples, known, batch_size, progress)
    result: dict[str, Any] = rank_metrics(torch.cat([tail, head]))
    result["tail"] = rank_metrics(tail)
    result["head"] = rank_metrics(head)
    if per_relation:
        names = triples.relation_names or [str(i) for i in range(triples.num_relations)]
        result["per_relation"] = {
            names[rel]: rank_metrics(torch.cat([tail[mask], head[mask]]))
            for rel in triples.relations.unique().tolist()
            for mask in [triples.relations == rel]
        }
    return result
