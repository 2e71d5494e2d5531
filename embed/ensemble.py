"""Several scorers as one: a weighted sum of their log-probabilities over the entities.

Each component's scores for a query become a distribution over all entities (log-softmax), so scorers
whose scores live on different scales add up: RotatE's margin minus a distance, the text model's scaled
cosine, the structure scores of `embed.structure`. The combined score is

    s(x | q) = sum_k w_k * log_softmax_x(s_k(x | q)),    w_k >= 0

and a weight also sets its component's temperature. With `never_self` ([R] bool, from
`embed.structure.irreflexive`), the anchor itself ranks last for the relations it marks. The weights are chosen on the validation split,
never on test (`fit_weights`), by coordinate ascent on its filtered MRR. Each validation query is reduced
to its candidates once: the target and every component's top `candidates` entities, with the other
known answers removed. A weight vector's MRR is then one product over that small table. The ranks are
exact down to rank `candidates` and at worst optimistic below it, where 1/rank hardly moves the MRR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from .evaluate import ScoreAll
from .models import LinkPredictor
from .triples import KnownTriples, Triples

ENTRIES_PER_BATCH = 2**28
WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)


def scorer(model: LinkPredictor) -> ScoreAll:
    """The model's all-entity scores with its entity table computed once (a GNN encoder, the text head's
    candidate vectors), as the evaluator uses them."""
    model.eval()
    with torch.no_grad():
        table = model.entity_table()

    def score_all(anchors: Tensor, relations: Tensor, predict_tail: bool) -> Tensor:
        return model.score_all(anchors.to(table.device), relations.to(table.device), predict_tail, table)

    return score_all


def _log_probabilities(components: Mapping[str, ScoreAll], anchors: Tensor, relations: Tensor,
                       predict_tail: bool) -> Tensor:
    """[batch, num_entities, K]: each component's log-softmax over the entities."""
    return torch.stack([torch.log_softmax(score(anchors, relations, predict_tail).float().cpu(), dim=1)
                        for score in components.values()], dim=-1)


def combine(components: Mapping[str, ScoreAll], weights: Mapping[str, float], never_self: Tensor | None = None) -> ScoreAll:
    """sum_k weights[k] * log p_k, per query over all entities; components with weight 0 are not run; the
    anchor last for the relations `never_self` marks."""
    used = {name: score for name, score in components.items() if weights.get(name, 0.0) > 0}
    if not used:
        raise ValueError("an ensemble needs at least one component with a positive weight")
    w = torch.tensor([weights[name] for name in used])

    def score_all(anchors: Tensor, relations: Tensor, predict_tail: bool) -> Tensor:
        scores = _log_probabilities(used, anchors, relations, predict_tail) @ w
        if never_self is not None:
            rows = torch.nonzero(never_self[relations.cpu()]).flatten()
            scores[rows, anchors.cpu()[rows]] = float("-inf")
        return scores

    return score_all


class CandidateTable:
    """Every validation query's candidates with each component's log-probability ([Q, C, K]); column 0 is
    the target. `repeat` marks an entity already in an earlier column (several components' top lists
    overlap), so that no candidate is counted twice. An anchor that `never_self` rules out is dropped like
    another known answer, as `combine` ranks it last."""

    def __init__(self, components: Mapping[str, ScoreAll], triples: Triples, known: KnownTriples, candidates: int = 100,
                 batch_size: int = 256, progress: bool = False, never_self: Tensor | None = None):
        self.names = list(components)
        # [batch, entities, components] floats at a time: at most about 1 GB on a graph of a million concepts
        batch_size = max(1, min(batch_size, ENTRIES_PER_BATCH // (triples.num_entities * len(self.names))))
        tables, repeats = [], []
        with torch.no_grad():
            for start in tqdm(range(0, len(triples), batch_size), desc="scoring validation", unit="batch",
                              disable=not progress, leave=False):
                h, r, t = (x[start:start + batch_size] for x in (triples.heads, triples.relations, triples.tails))
                for anchors, targets, predict_tail, (rows, entities) in ((h, t, True, known.tails(h, r)),
                                                                        (t, h, False, known.heads(r, t))):
                    logp = _log_probabilities(components, anchors, r, predict_tail)
                    others = torch.zeros(logp.shape[:2], dtype=torch.bool)
                    others[rows, entities] = True
                    others[torch.arange(len(targets)), targets] = False
                    if never_self is not None:  # after the target: an anchor ruled out ranks low even as the target
                        ruled_out = never_self[r]
                        others[ruled_out, anchors[ruled_out]] = True
                    logp = logp.masked_fill(others[..., None], -1e4)  # another true answer never outranks
                    k = min(candidates, logp.shape[1])
                    picked = torch.cat([targets[:, None], *(logp[..., i].topk(k, dim=1).indices for i in range(len(self.names)))], 1)
                    tables.append(logp.gather(1, picked[..., None].expand(-1, -1, len(self.names))))
                    ordered, order = picked.sort(dim=1, stable=True)
                    repeat = torch.zeros_like(picked, dtype=torch.bool)
                    repeats.append(repeat.scatter_(1, order[:, 1:], ordered[:, 1:] == ordered[:, :-1]))
        self.table = torch.cat(tables)
        self.counted = ~torch.cat(repeats)

    def mrr(self, weights: Tensor) -> float:
        scores = self.table @ weights
        true = scores[:, :1]
        higher = ((scores > true) & self.counted).sum(1)
        equal = ((scores == true) & self.counted).sum(1) - 1  # the target itself
        return float((1.0 / (1.0 + higher + equal / 2.0)).mean())


@dataclass
class Fit:
    weights: dict[str, float]
    mrr: float                # the ensemble's validation MRR
    alone: dict[str, float]   # each component's own validation MRR, for comparison


def fit_weights(components: Mapping[str, ScoreAll], triples: Triples, known: KnownTriples,
                grid: Sequence[float] = WEIGHT_GRID, rounds: int = 3, progress: bool = False,
                never_self: Tensor | None = None) -> Fit:
    """Weights (on `grid`) maximising the filtered MRR on `triples` (the validation split) by coordinate
    ascent from all ones or the best component alone, whichever ranks better, so the ensemble is never worse
    on valid than its best part (module docstring)."""
    table = CandidateTable(components, triples, known, progress=progress, never_self=never_self)
    alone = {name: table.mrr(torch.eye(len(table.names))[i]) for i, name in enumerate(table.names)}
    weights = torch.ones(len(table.names))
    best = table.mrr(weights)
    if max(alone.values()) > best:  # start from the best single component when all-ones is worse
        best = max(alone.values())
        weights = torch.eye(len(table.names))[list(alone.values()).index(best)]
    for _ in range(rounds):
        improved = False
        for i in range(len(weights)):
            for value in grid:
                trial = weights.clone()
                trial[i] = value
                if trial.sum() > 0 and (mrr := table.mrr(trial)) > best + 1e-6:
                    best, weights, improved = mrr, trial, True
        if not improved:
            break
    return Fit(dict(zip(table.names, weights.tolist())), best, alone)
