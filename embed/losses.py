"""Training losses for link prediction, looked up by name in `LOSSES`.

Each loss takes the model, the run's config, a batch of positive (h, r, t) ids, the sampling generator
and the epoch's `state` (what a loss carries from batch to batch: the pre-batch answers of `infonce`),
and returns the loss and the rows to regularise (None when N3 is off). Sampled losses corrupt one side
of each positive, chosen at random; `ce` and `infonce` predict both sides of every positive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import KGEConfig
from .models import LinkPredictor

Loss = Callable[[LinkPredictor, KGEConfig, Tensor, Tensor, Tensor, torch.Generator, dict[str, Any]],
                tuple[Tensor, Tensor | None]]
LOSSES: dict[str, Loss] = {}


def register(name: str) -> Callable[[Loss], Loss]:
    def add(loss: Loss) -> Loss:
        LOSSES[name] = loss
        return loss

    return add


def both_sides(h: Tensor, r: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(anchors, relations, targets, predict_tail): every positive as a tail query and as a head query."""
    predict_tail = torch.arange(2 * len(h), device=h.device) < len(h)
    return torch.cat([h, t]), r.repeat(2), torch.cat([t, h]), predict_tail


def one_side(h: Tensor, r: Tensor, t: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(anchors, relations, targets, predict_tail): each positive as a tail or a head query, at random."""
    predict_tail = torch.rand(h.shape, generator=generator, device=h.device) < 0.5
    return torch.where(predict_tail, h, t), r, torch.where(predict_tail, t, h), predict_tail


@register("ce")
def one_to_all(model: LinkPredictor, config: KGEConfig, h: Tensor, r: Tensor, t: Tensor, generator: torch.Generator,
               state: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
    """1-N: softmax cross-entropy over all entities for the tail and the head query of every positive."""
    anchors, r, targets, predict_tail = both_sides(h, r, t)
    table = model.entity_table()
    scores = model.similarity_all(model.queries(anchors, model.relation_rows(r), predict_tail, table),
                                  model.kge.prepare(table))
    loss = F.cross_entropy(scores, targets, label_smoothing=config.label_smoothing)
    return loss, table[torch.cat([anchors, targets])] if config.regularization else None


@register("infonce")
def in_batch(model: LinkPredictor, config: KGEConfig, h: Tensor, r: Tensor, t: Tensor, generator: torch.Generator,
             state: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
    """SimKGC's contrastive loss: each query against the batch's answers, those of the previous
    `config.prebatch` batches and its own anchor (self negative: "pleural effusion IS_A ?" is not
    "pleural effusion"); the positive's score lowered by `additive_margin` (in cosine units for the
    text model), candidates that are known training answers of the query masked out."""
    anchors, r, targets, predict_tail = both_sides(h, r, t)
    # Each entity once among the candidates (a popular parent answers many queries of a batch).
    candidates, where = torch.unique(torch.cat([targets, *state.get("prebatch", []), anchors]), return_inverse=True)
    labels = where[:len(targets)]
    queries = model.queries(anchors, model.relation_rows(r), predict_tail)
    scores = model.similarity_all(queries, model.prepared_rows(candidates))
    positive = F.one_hot(labels, len(candidates)).bool()
    scores = scores - config.additive_margin * getattr(model.kge, "scale", 1.0) * positive
    if "train_keys" in state:  # other true answers of a query are not its negatives
        false = known_answer(state["train_keys"], anchors, r, predict_tail, candidates, model.num_entities,
                             model.num_relations)
        scores = scores.masked_fill(false & ~positive, -torch.inf)
    loss = F.cross_entropy(scores, labels)
    if config.prebatch:
        state["prebatch"] = [targets.detach(), *state.get("prebatch", [])][:config.prebatch]
    return loss, None


def train_keys(h: Tensor, r: Tensor, t: Tensor, num_entities: int, num_relations: int) -> Tensor:
    """Sorted keys of every training (anchor, directed relation, answer), both directions: the inverse
    relation of r is r + num_relations."""
    directed = torch.cat([r, r + num_relations])
    return torch.unique(answer_keys(torch.cat([h, t]), directed, torch.cat([t, h]), num_entities, num_relations))


def answer_keys(anchors: Tensor, directed: Tensor, answers: Tensor, num_entities: int, num_relations: int) -> Tensor:
    """One int64 per (anchor, directed relation, answer), broadcasting."""
    return (anchors * (2 * num_relations) + directed) * num_entities + answers


def known_answer(keys: Tensor, anchors: Tensor, r: Tensor, predict_tail: Tensor, candidates: Tensor,
                 num_entities: int, num_relations: int) -> Tensor:
    """[queries, candidates]: whether each candidate is a training answer of each query."""
    directed = torch.where(predict_tail, r, r + num_relations)
    pairs = answer_keys(anchors.unsqueeze(1), directed.unsqueeze(1), candidates.unsqueeze(0), num_entities, num_relations)
    # A binary search in the sorted keys: `torch.isin` over a [2048, 8192] batch takes 100 times longer.
    found = torch.searchsorted(keys, pairs).clamp_(max=len(keys) - 1)
    return keys[found] == pairs


def _sampled(score_loss: Callable[[KGEConfig, Tensor, Tensor], Tensor]) -> Loss:
    """A loss over sampled negatives from a function of positive [B] and negative [B, k] scores."""

    def loss(model: LinkPredictor, config: KGEConfig, h: Tensor, r: Tensor, t: Tensor, generator: torch.Generator,
             state: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        anchors, r, targets, predict_tail = one_side(h, r, t, generator)
        positive, negative, rows = score_sampled(model, config, anchors, targets, model.relation_rows(r), predict_tail,
                                                 generator)
        if score_loss is not margin_ranking and model.logit_offset:  # a margin ranking loss needs no offset
            positive, negative = positive + model.logit_offset, negative + model.logit_offset
        return score_loss(config, positive, negative), rows

    return loss


def score_sampled(model: LinkPredictor, config: KGEConfig, anchor_ids: Tensor, target_ids: Tensor,
                  relations: Tensor, predict_tail: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
    """Positive scores [batch], negative scores [batch, negatives], and the positives' entity rows (for
    regularisation; only when `config.regularization` is set).

    A positive and its negatives share one query. With `shared_negatives`, one pool of `negatives`
    entities serves the whole batch, scored by one matrix product. Otherwise each positive gets its own;
    when these outnumber the entities and the scores are matrix products, scoring every entity once and
    picking the negatives' scores out is cheaper than gathering a [batch, negatives, dim] tensor."""
    n, k = len(anchor_ids), config.negatives
    table = model.entity_table() if model.encoder is not None else None
    ends = torch.cat([anchor_ids, target_ids])
    rows = model.entity_rows(ends, table) if config.regularization else None
    if config.shared_negatives:
        pool = torch.randint(model.num_entities, (k,), generator=generator, device=anchor_ids.device)
        targets, pool_rows = model.prepared_rows(torch.cat([target_ids, pool]), table).split([n, k])
        queries = model.queries(anchor_ids, relations, predict_tail, table)
        return model.similarity(queries, targets), model.similarity_all(queries, pool_rows), rows
    # Per row: the target, then k random entities; one write is cheaper than a concatenation.
    ids = torch.randint(model.num_entities, (n, 1 + k), generator=generator, device=anchor_ids.device)
    ids[:, 0] = target_ids
    queries = model.queries(anchor_ids, relations, predict_tail, table)
    if not config.sparse and model.matmul_scoring and model.num_entities <= n * k:
        full = model.entity_table() if table is None else table
        scores = model.similarity_all(queries, model.kge.prepare(full)).gather(1, ids)
    else:
        scores = model.similarity(queries.unsqueeze(1), model.prepared_rows(ids, table))
    return scores[:, 0], scores[:, 1:], rows


def margin_ranking(config: KGEConfig, positive: Tensor, negative: Tensor) -> Tensor:
    return F.relu(config.margin - positive.unsqueeze(1) + negative).mean()


def sampled_softmax(config: KGEConfig, positive: Tensor, negative: Tensor) -> Tensor:
    logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(positive), dtype=torch.long, device=positive.device),
                           label_smoothing=config.label_smoothing)


def logistic(config: KGEConfig, positive: Tensor, negative: Tensor) -> Tensor:
    return (F.softplus(-positive).mean() + F.softplus(negative).mean()) / 2


def self_adversarial(config: KGEConfig, positive: Tensor, negative: Tensor) -> Tensor:
    weights = torch.softmax(config.adversarial_temperature * negative.detach(), dim=1)
    return (F.softplus(-positive).mean() + (weights * F.softplus(negative)).sum(1).mean()) / 2


LOSSES.update({"margin": _sampled(margin_ranking), "softmax": _sampled(sampled_softmax), "bce": _sampled(logistic),
               "nssa": _sampled(self_adversarial)})
