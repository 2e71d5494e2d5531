"""The graph-structure scores (embed.structure) and the ensemble that combines them with a model (embed.ensemble)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embed.ensemble import CandidateTable, combine, fit_weights
from embed.evaluate import evaluate
from embed import structure
from embed.structure import DegreePrior, NeighbourText
from embed.triples import Split, Triples


def triples(rows: list[tuple[int, int, int]], entities: int, relations: int = 1) -> Triples:
    h, r, t = (torch.tensor(x) for x in zip(*rows))
    return Triples(h, r, t, entities, relations)


def forest(parents: int = 20, children: int = 10) -> tuple[Triples, Triples]:
    """Every child (ids after the parents) IS_A (relation 0) one parent; one child of each parent is held
    out: (train, held-out)."""
    train, held = [], []
    for p in range(parents):
        for c in range(children):
            child = parents + p * children + c
            (held if c == 0 else train).append((child, 0, p))
    return triples(train, parents * (children + 1)), triples(held, parents * (children + 1))


def test_the_degree_prior_learns_that_an_orphan_is_the_missing_child():
    train, held = forest()
    prior = DegreePrior(train).fit(train, steps=60)
    # (?, isa, p): the held-out children are the only entities with neither a parent nor children in
    # training. The parents have no parent either: leave-one-out is what teaches the prior that a missing
    # child looks like an orphan without children, not like any orphan.
    scores = prior(held.tails, held.relations, False)
    missing = (prior.out[0] == 0) & (prior.into[0] == 0)
    assert missing.sum() == 20
    assert (scores[:, missing].min(1).values > scores[:, ~missing].max(1).values).all()
    # (c, isa, ?): an entity that already has children is the likely parent.
    tail_scores = prior(held.heads, held.relations, True)
    assert (tail_scores[:, :20].min(1).values > tail_scores[:, 20:].max(1).values).all()


def test_without_leaving_the_edge_out_the_fit_would_learn_the_opposite():
    train, held = forest()
    naive = DegreePrior(train)
    weights = naive.weights.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weights], lr=0.1)
    for _ in range(60):  # the same fit with the answer's own edge kept in its degree
        loss = F.cross_entropy(weights[torch.full((len(train),), 1)] @ naive.features.T, train.heads)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    naive.weights = weights.detach()
    fitted = DegreePrior(train).fit(train, steps=60)
    split = Split(train, triples([(0, 0, 1)], train.num_entities), held)
    naive_mrr = evaluate(naive, held, split.known)["head"]["mrr"]
    fitted_mrr = evaluate(fitted, held, split.known)["head"]["mrr"]
    # The 20 held-out children tie under any degree score (which orphan belongs to which parent is the text's
    # business), so the best a prior can do is the middle of those 20: rank 10.5. Kept edges put them last.
    assert fitted_mrr > 0.09 and naive_mrr < 0.02


def test_a_candidate_that_reads_like_the_anchors_answers_scores_high():
    # 0 and 1 IS_A 4; entity 2 reads like 0, entity 5 like 1; 3 and 6 read like neither.
    features = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0],
                             [0.0, 0.3, 1.0], [0.1, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    train = triples([(0, 0, 4), (1, 0, 4)], 7)
    text = NeighbourText(train, features)
    # (?, isa, 4): siblings of 0 and 1 are the likely other children, whichever of the two they read like.
    scores = text.resembles_answers(torch.tensor([4]), torch.tensor([0]), False)[0]
    assert set(scores.topk(4).indices.tolist()) == {0, 1, 2, 5} and scores[[3, 6]].max() < scores[[2, 5]].min()
    # No known answer: every entity scores alike (0).
    assert text.resembles_answers(torch.tensor([3]), torch.tensor([0]), True).unique().numel() == 1


def test_a_hub_is_read_through_its_first_answers_only():
    parents, children = 1, structure.MAX_ANSWERS + 8
    train, _ = forest(parents, children)
    features = torch.eye(train.num_entities)
    scores = NeighbourText(train, features).resembles_answers(torch.tensor([0]), torch.tensor([0]), False)[0]
    assert int((scores == structure.COSINE_SCALE).sum()) == structure.MAX_ANSWERS


def test_the_candidate_table_ranks_exactly_when_every_entity_is_a_candidate():
    generator = torch.Generator().manual_seed(0)
    n = 31
    table_a, table_b = torch.randn(3, n, generator=generator), torch.randn(3, n, generator=generator)
    components = {"a": lambda anchors, relations, tail: table_a[relations + 0 * anchors],
                  "b": lambda anchors, relations, tail: table_b[relations] + 3 * F.one_hot(anchors, n)}  # the anchor first
    rows = [(i % n, i % 3, (5 * i + 3) % n) for i in range(40)] + [(4, 2, 4)]  # relation 2 links 4 to itself
    valid = triples(rows[:20], n, 3)
    split = Split(triples(rows[20:], n, 3), valid, triples(rows[:1], n, 3))
    never_self = structure.irreflexive(split.train)
    assert never_self.tolist() == [True, True, False]
    for rule in (None, never_self):
        table = CandidateTable(components, valid, split.known, candidates=n, never_self=rule)
        for weights in ([1.0, 0.0], [0.3, 0.7], [2.0, 1.0]):
            exact = evaluate(combine(components, dict(zip("ab", weights)), rule), valid, split.known)["mrr"]
            assert abs(table.mrr(torch.tensor(weights)) - exact) < 1e-6
    # With the rule, b's favourite (the anchor) ranks last for relations 0 and 1, and helps b's ranks there.
    scores = combine(components, {"b": 1.0}, never_self)(torch.tensor([3, 3, 3]), torch.tensor([0, 1, 2]), True)
    assert scores[:2, 3].isinf().all() and scores[2].argmax() == 3
    looped = valid.heads == valid.tails  # (7, 1, 7): relation 1 never links a concept to itself in training
    assert looped.sum() == 1
    others = valid.select(torch.nonzero(~looped).flatten())
    ruled = CandidateTable(components, others, split.known, candidates=n, never_self=never_self)
    plain = CandidateTable(components, others, split.known, candidates=n)
    assert ruled.mrr(torch.tensor([0.0, 1.0])) > plain.mrr(torch.tensor([0.0, 1.0]))


def test_fitted_weights_are_never_worse_on_valid_than_the_best_part():
    train, held = forest()
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(train.num_entities, generator=generator)
    components = {"degree prior": DegreePrior(train).fit(train, steps=60),
                  "noise": lambda anchors, relations, tail: noise.expand(len(anchors), -1)}
    split = Split(train, held, held)
    fit = fit_weights(components, held, split.known)
    assert fit.mrr >= max(fit.alone.values()) > fit.alone["noise"]
    assert fit.weights["degree prior"] > 0
    exact = evaluate(combine(components, fit.weights), held, split.known)["mrr"]
    assert abs(exact - fit.mrr) < 0.02  # candidates cover the top 100 of 220 entities


def test_a_kept_ensemble_counts_only_when_fitted_after_the_last_checkpoint(tmp_path):
    import json
    import os

    from embed.combined import current_fit

    (tmp_path / "checkpoint.pt").write_bytes(b"model")
    spec = {"weights": {"text": 2.0, "degree prior": 1.0}, "valid_mrr": 0.3, "alone": {"text": 0.2, "degree prior": 0.06},
            "others": [], "never_self": ["isa"]}
    (tmp_path / "ensemble.json").write_text(json.dumps(spec))
    os.utime(tmp_path / "checkpoint.pt", (1_000, 1_000))
    os.utime(tmp_path / "ensemble.json", (2_000, 2_000))
    fit = current_fit(tmp_path)
    assert fit is not None and fit.weights == spec["weights"] and fit.mrr == 0.3 and fit.alone == spec["alone"]
    os.utime(tmp_path / "checkpoint.pt", (3_000, 3_000))  # trained on since: the weights must be fitted again
    assert current_fit(tmp_path) is None
    os.utime(tmp_path / "checkpoint.pt", (1_000, 1_000))
    (tmp_path / "ensemble.json").write_text(json.dumps({**spec, "others": ["/runs/rotate"]}))
    os.utime(tmp_path / "ensemble.json", (2_000, 2_000))
    assert current_fit(tmp_path) is None  # refitted by `medkg embed combine`, not by training
    spec.pop("never_self")
    (tmp_path / "ensemble.json").write_text(json.dumps(spec))
    os.utime(tmp_path / "ensemble.json", (2_000, 2_000))
    assert current_fit(tmp_path) is None  # fitted before the anchor rule: fitted again
