"""Knowledge-graph embeddings: triples and splits, filtered ranking, models, training and resumption."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor
from torch_geometric.nn.kge import KGEModel

from embed.evaluate import evaluate, filtered_ranks
from embed.models import HEADS, KGEConfig, LinkPredictor, build_model
from embed.runs import CHECKPOINT, METRICS
from embed.train import batch_loss, load_model, make_optimizer, train
from embed.triples import KnownTriples, Split, Triples, split_triples
from kg.errors import DamagedFileError
from tests.graphs import small_graph


def cyclic_triples(n: int = 30) -> Triples:
    """Entity i is linked to i+1, i+2 and i+5 (mod n) by three relations: learnable by rotations."""
    i = torch.arange(n)
    shifts = (1, 2, 5)
    return Triples.from_arrays(i.repeat(len(shifts)), torch.arange(len(shifts)).repeat_interleave(n),
                               torch.cat([(i + s) % n for s in shifts]), n, len(shifts))


def random_triples(n: int = 3000, entities: int = 200, relations: int = 7, seed: int = 0) -> Triples:
    g = torch.Generator().manual_seed(seed)
    return Triples.from_arrays(torch.randint(entities, (n,), generator=g), torch.randint(relations, (n,), generator=g),
                               torch.randint(entities, (n,), generator=g), entities, relations)


TG_HEADS = sorted(name for name, head in HEADS.items() if issubclass(head, KGEModel))  # all but text
FAST = {"dim": 8, "epochs": 2, "batch_size": 16, "negatives": 4, "lr": 0.05}


def test_triples_from_graph_names_and_deduplicates():
    kg = small_graph()
    from kg.graph import Relation

    kg.add_relation(Relation("T:effusion", "IS_A", "T:pleural_disease", "CHD", "isa", "OTHER"))  # same triple, other source
    triples = Triples.from_graph(kg)
    assert len(triples) == 5 and triples.num_entities == 7
    assert triples.entity_names == sorted(c.id for c in kg.concepts())
    assert triples.relation_names == ["co_occurs_with", "isa", "located_at"]
    names = {(triples.entity_names[h], triples.relation_names[r], triples.entity_names[t])
             for h, r, t in triples.stacked().tolist()}
    assert ("T:effusion", "located_at", "T:pleura") in names


def test_triples_reject_out_of_range_ids():
    with pytest.raises(ValueError):
        Triples.from_arrays([0, 5], [0, 0], [1, 1], num_entities=3, num_relations=1)


def rows(triples: Triples) -> set[tuple[int, int, int]]:
    return set(map(tuple, triples.stacked().tolist()))


def test_split_is_a_deterministic_partition_covering_valid_and_test():
    triples = random_triples()
    split = split_triples(triples, valid=0.1, test=0.1, seed=3)
    train, valid, test = rows(split.train), rows(split.valid), rows(split.test)
    assert not (train & valid or train & test or valid & test)
    assert train | valid | test == rows(triples)
    assert len(valid) == len(test) == round(0.1 * len(triples))
    seen_entities = set(split.train.heads.tolist()) | set(split.train.tails.tolist())
    for part in (split.valid, split.test):
        assert set(part.heads.tolist()) | set(part.tails.tolist()) <= seen_entities
        assert set(part.relations.tolist()) <= set(split.train.relations.tolist())
    assert rows(split_triples(triples, seed=3).test) == test
    assert rows(split_triples(triples, seed=4).test) != test


def test_split_shrinks_when_coverage_needs_most_triples():
    # A star: every leaf has one edge, so every triple is needed in training.
    star = Triples.from_arrays([0] * 20, [0] * 20, list(range(1, 21)))
    split = split_triples(star)
    assert len(split.train) == 20 and len(split.valid) == len(split.test) == 0


def test_known_triples_look_up_every_true_tail_and_head():
    triples = random_triples(500, entities=20, relations=3)
    known = KnownTriples(triples)
    h, r, t = triples.heads[:50], triples.relations[:50], triples.tails[:50]
    rows, tails = known.tails(h, r)
    all_rows = set(map(tuple, triples.stacked().tolist()))
    for i in range(50):
        expected = {b for a, rel, b in all_rows if a == h[i] and rel == r[i]}
        assert set(tails[rows == i].tolist()) == expected
    rows, heads = known.heads(r, t)
    for i in range(50):
        assert set(heads[rows == i].tolist()) == {a for a, rel, b in all_rows if b == t[i] and rel == r[i]}


def hand_model() -> LinkPredictor:
    """DistMult in one dimension: entities 1, 2, 2, 3 and relation 1, so score(h, r, t) = e_h * e_t."""
    model = LinkPredictor(KGEConfig(model="distmult", dim=1), num_entities=4, num_relations=1)
    with torch.no_grad():
        model.kge.node_emb.weight.copy_(torch.tensor([[1.0], [2.0], [2.0], [3.0]]))
        model.kge.rel_emb.weight.fill_(1.0)
    return model


def test_filtered_realistic_ranks_by_hand():
    model = hand_model()
    test = Triples.from_arrays([0], [0], [1], 4, 1)
    train = Triples.from_arrays([0], [0], [3], 4, 1)
    # Tail query (0, r, ?): scores 1, 2, 2, 3 for entities 0..3; the true tail 1 scores 2. Entity 3 is a
    # known tail (train) and is filtered; entity 2 ties: realistic rank 1 + 0 + 1/2.
    # Head query (?, r, 1): scores 2, 4, 4, 6; the true head 0 scores 2; entities 1, 2, 3 are all higher.
    tail, head = filtered_ranks(model, test, KnownTriples(train, test))
    assert tail.tolist() == [1.5] and head.tolist() == [4.0]
    # Unfiltered by the training triple, entity 3 outranks the true tail: 1 + 1 + 1/2.
    tail, _ = filtered_ranks(model, test, KnownTriples(test))
    assert tail.tolist() == [2.5]
    metrics = evaluate(model, test, KnownTriples(train, test), per_relation=True)
    assert metrics["mrr"] == pytest.approx((1 / 1.5 + 1 / 4) / 2)
    assert (metrics["hits@1"], metrics["hits@3"], metrics["hits@10"]) == (0.0, 0.5, 1.0)
    assert metrics["tail"]["mrr"] == pytest.approx(1 / 1.5) and metrics["head"]["mean_rank"] == 4.0
    assert metrics["per_relation"]["0"]["count"] == 2


def test_a_model_that_scores_everything_alike_ranks_in_the_middle():
    model = hand_model()
    with torch.no_grad():
        model.kge.node_emb.weight.fill_(1.0)
    test = Triples.from_arrays([0], [0], [1], 4, 1)
    tail, head = filtered_ranks(model, test, KnownTriples(test))
    assert tail.tolist() == head.tolist() == [2.5]  # 1 + 3 ties / 2


@pytest.mark.parametrize("head", TG_HEADS)
@pytest.mark.parametrize("p_norm", [1.0, 2.0])
def test_scores_equal_torch_geometric_forward_for_triples_negatives_and_all_entities(head, p_norm):
    triples = random_triples(200, entities=30, relations=4)
    model = build_model(KGEConfig(model=head, dim=6, p_norm=p_norm), triples)
    h, r, t = triples.heads, triples.relations, triples.tails
    expected = model.kge(h, r, t)
    torch.testing.assert_close(model.score(h, r, t), expected)  # more ids than entities: TransE normalises the table
    torch.testing.assert_close(model.score(h[:5], r[:5], t[:5]), expected[:5])  # fewer: only the rows
    all_tails, all_heads = model.score_all(h, r, True), model.score_all(t, r, False)
    torch.testing.assert_close(all_tails.gather(1, t.unsqueeze(1)).squeeze(1), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(all_heads.gather(1, h.unsqueeze(1)).squeeze(1), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_name", ["transe", "distmult", "rotate", "complex", "rgcn-distmult", "rgcn-rotate", "film-complex"])
@pytest.mark.parametrize("loss", ["margin", "bce", "nssa", "softmax", "ce"])
def test_every_model_and_loss_takes_a_step(model_name, loss):
    triples = random_triples(100, entities=25, relations=3)
    config = KGEConfig(model=model_name, loss=loss, regularization=1e-3, **FAST)
    model = build_model(config, triples)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_value = batch_loss(model, config, triples.heads[:16], triples.relations[:16], triples.tails[:16],
                            torch.Generator().manual_seed(0))
    assert torch.isfinite(loss_value)
    loss_value.backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("head", ["distmult", "rotate", "complex"])
def test_sampled_negatives_score_the_same_by_gather_and_by_all_entities(head, monkeypatch):
    triples = random_triples(100, entities=25, relations=3)  # 16 x 4 negatives outnumber 25 entities
    config = KGEConfig(model=head, loss="nssa", **FAST)
    model = build_model(config, triples)
    args = (triples.heads[:16], triples.relations[:16], triples.tails[:16])
    by_all = batch_loss(model, config, *args, torch.Generator().manual_seed(0))
    monkeypatch.setattr(LinkPredictor, "matmul_scoring", property(lambda self: False))
    by_gather = batch_loss(model, config, *args, torch.Generator().manual_seed(0))
    torch.testing.assert_close(by_all, by_gather, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head", TG_HEADS)
def test_sparse_gradients_with_a_shared_pool_of_negatives_take_a_step(head):
    triples = random_triples(100, entities=25, relations=3)
    config = KGEConfig(model=head, loss="softmax", shared_negatives=True, sparse=True, regularization=1e-3, **FAST)
    model = build_model(config, triples)
    before = [p.detach().clone() for p in model.parameters()]
    loss = batch_loss(model, config, triples.heads[:16], triples.relations[:16], triples.tails[:16],
                      torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad.is_sparse for p in model.parameters())
    make_optimizer(model, config).step()
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert all(changed)


def test_bad_configs_are_rejected():
    for bad in ({"model": "transh"}, {"model": "gat-distmult"}, {"loss": "hinge"}, {"dim": 0},
                {"sparse": True, "loss": "ce"}, {"sparse": True, "model": "rgcn-distmult"}):
        with pytest.raises(ValueError):
            KGEConfig(**bad)


def test_training_learns_a_cyclic_graph(tmp_path):
    split = split_triples(cyclic_triples(), seed=0)
    config = KGEConfig(model="rotate", dim=16, loss="nssa", margin=4.0, lr=0.05, negatives=8, epochs=60,
                       batch_size=32, eval_every=30)
    model = train(config, split, tmp_path, progress=False)
    random_mrr = sum(1 / k for k in range(1, 31)) / 30
    assert evaluate(model, split.test, split.known)["mrr"] > max(0.8, 5 * random_mrr)
    log = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 61))
    assert log[-1]["loss"] < log[0]["loss"] and "valid" in log[29] and "valid" not in log[30]


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    split = split_triples(random_triples(600, entities=60, relations=4), seed=1)
    config = KGEConfig(model="complex", loss="nssa", dim=8, batch_size=64, negatives=8, lr=0.02, epochs=6, eval_every=2)
    straight = train(config, split, tmp_path / "straight", progress=False)
    train(KGEConfig(**{**config.to_dict(), "epochs": 3}), split, tmp_path / "resumed", progress=False)
    # A crash after logging epoch 4 but before its checkpoint: epoch 4 must be run and logged again.
    with open(tmp_path / "resumed" / METRICS, "a") as log:
        log.write(json.dumps({"epoch": 4, "loss": -1.0, "seconds": 0.0}) + "\n")
    resumed = train(config, split, tmp_path / "resumed", progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    logs = [[json.loads(line) for line in (tmp_path / run / METRICS).read_text().splitlines()]
            for run in ("straight", "resumed")]
    assert [r["epoch"] for r in logs[1]] == list(range(1, 7))
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]
    assert [r.get("valid") for r in logs[0]] == [r.get("valid") for r in logs[1]]
    loaded = load_model(tmp_path / "resumed", split.train)
    for a, b in zip(straight.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_refuses_another_run(tmp_path):
    split = split_triples(random_triples(300, entities=40, relations=3), seed=1)
    config = KGEConfig(model="distmult", loss="bce", **FAST)
    train(config, split, tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).exists()
    with pytest.raises(ValueError, match="dim"):
        train(KGEConfig(**{**config.to_dict(), "dim": 16}), split, tmp_path, progress=False)
    other = Split(split.valid, split.train, split.test)
    with pytest.raises(ValueError, match="training data differ"):
        train(config, other, tmp_path, progress=False)
    # More epochs is a continuation, not another run.
    train(KGEConfig(**{**config.to_dict(), "epochs": 3}), split, tmp_path, progress=False)
    assert len((tmp_path / METRICS).read_text().splitlines()) == 3


@pytest.mark.parametrize("encoder", ["rgcn", "film"])
def test_gnn_encoders_pass_messages_over_training_edges_only(encoder):
    edges = random_triples(400, entities=50, relations=3)
    # Entity 50 has no edge at all: message passing must leave its row as it is.
    triples = Triples.from_arrays(edges.heads, edges.relations, edges.tails, num_entities=51, num_relations=3)
    split = split_triples(triples, seed=0)
    model = build_model(KGEConfig(model=f"{encoder}-distmult", dim=8), split.train)
    assert model.edge_index.shape[1] == 2 * len(split.train)
    assert int(model.edge_type.max()) < 2 * split.train.num_relations
    assert model.entity_table().shape == (51, 8)
    assert math.isfinite(evaluate(model, split.test, split.known)["mrr"])
    # A message passes along edges: changing one entity's own row changes its neighbours' encoded rows.
    entity = int(split.train.heads[0])
    neighbour = int(split.train.tails[0])
    isolated = 50
    before = model.entity_table().detach()
    with torch.no_grad():
        model.kge.node_emb.weight[entity] += 1.0
        model.kge.node_emb.weight[isolated] += 1.0
    after = model.entity_table().detach()
    assert not torch.allclose(before[neighbour], after[neighbour])
    # The isolated row changes only through its own (self-loop) weights, by exactly what the same change
    # makes of an isolated row in a graph with no edges at all.
    alone = build_model(KGEConfig(model=f"{encoder}-distmult", dim=8), split.train)
    alone.load_state_dict(model.state_dict())
    alone.edge_index, alone.edge_type = alone.edge_index[:, :0], alone.edge_type[:0]
    torch.testing.assert_close(after[isolated], alone.entity_table().detach()[isolated])
    assert not torch.allclose(before[isolated], after[isolated])


def text_graph(entities: int = 120, seed: int = 0) -> tuple[Triples, Tensor]:
    """A tree whose child's text vector is its parent's, turned by a fixed rotation, plus noise: the child's
    text tells its parent, but only to a model that has learned the rotation (their cosine does not)."""
    g = torch.Generator().manual_seed(seed)
    parents = torch.randint(0, 20, (entities - 20,), generator=g)
    features = torch.randn(20, 32, generator=g)
    rotation = torch.linalg.qr(torch.randn(32, 32, generator=g))[0]
    features = torch.cat([features, features[parents] @ rotation + 0.3 * torch.randn(entities - 20, 32, generator=g)])
    children = torch.arange(20, entities)
    triples = Triples.from_arrays(children, torch.zeros_like(children), parents, entities, 1)
    return triples, features


def test_text_model_ranks_parents_by_text_and_places_unseen_concepts():
    triples, features = text_graph()
    held_out = torch.arange(100, 120)  # children never seen in training: inductive
    seen = triples.tails.new_ones(len(triples), dtype=torch.bool)
    seen[(triples.heads.unsqueeze(1) == held_out).any(1)] = False
    split = split_triples(triples.select(seen.nonzero().squeeze(1)), valid=0.1, test=0.1, seed=0)
    unseen = triples.select((~seen).nonzero().squeeze(1))
    config = KGEConfig(model="text", text_features=True, loss="infonce", dim=32, batch_size=32, lr=0.005, epochs=12)
    model = build_model(config, split.train, features)
    known = KnownTriples(split.train, split.valid, split.test, unseen)
    before = evaluate(model, unseen, known)["tail"]["mrr"]
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(0)
    for _ in range(config.epochs):
        batch_ids = split.train.stacked()[torch.randperm(len(split.train), generator=generator)]
        state = {}
        for batch in batch_ids.split(config.batch_size):
            loss = batch_loss(model, config, *batch.unbind(1), generator, state)
            model.zero_grad()
            loss.backward()
            optimizer.step()
    assert len(state["prebatch"]) == config.prebatch
    after = evaluate(model, unseen, known)["tail"]
    assert after["mrr"] > max(0.35, 10 * before) and after["hits@10"] > 0.7, (before, after)
    # The candidate vectors are what a run exports.
    assert model.concept_vectors().shape == (120, 32)
    torch.testing.assert_close(model.concept_vectors().norm(dim=1), torch.ones(120))


def test_infonce_masks_known_answers_but_not_the_positive():
    from embed.losses import known_answer, train_keys

    keys = train_keys(torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([1, 2]), num_entities=4, num_relations=1)
    anchors, relations = torch.tensor([0, 1]), torch.tensor([0, 0])
    candidates = torch.tensor([1, 2, 3, 0])
    mask = known_answer(keys, anchors, relations, torch.tensor([True, False]), candidates, 4, 1)
    # (0, r, ?) knows 1 and 2; (?, r, 1) - the inverse query from 1 - knows 0.
    assert mask.tolist() == [[True, True, False, False], [False, False, False, True]]


def test_the_text_model_needs_text_features():
    with pytest.raises(ValueError, match="text feature row per entity"):
        build_model(KGEConfig(model="text", loss="infonce"), random_triples(50, entities=10, relations=2))
    with pytest.raises(ValueError, match="unknown encoder"):
        KGEConfig(model="rgcn-text", loss="infonce")


def test_interrupted_training_keeps_its_last_checkpoint_and_says_how_to_resume(tmp_path, monkeypatch):
    import embed.train as training

    split = split_triples(random_triples(300, entities=40, relations=3), seed=1)
    config = KGEConfig(model="distmult", loss="bce", **{**FAST, "epochs": 4})
    epoch_of = training._train_epoch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return epoch_of(*args, **kwargs)

    monkeypatch.setattr(training, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt, match=r"checkpoint after epoch 2 of 4; run the same command again to resume"):
        train(config, split, tmp_path, progress=False)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["epoch"] == 2
    monkeypatch.setattr(training, "_train_epoch", epoch_of)
    train(config, split, tmp_path, progress=False)
    assert [json.loads(line)["epoch"] for line in (tmp_path / METRICS).read_text().splitlines()] == [1, 2, 3, 4]


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_a_damaged_checkpoint_is_named_with_how_to_go_on(tmp_path, damage):
    split = split_triples(random_triples(300, entities=40, relations=3), seed=1)
    config = KGEConfig(model="distmult", loss="bce", **FAST)
    train(config, split, tmp_path, progress=False)
    path = tmp_path / CHECKPOINT
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a checkpoint"}[damage])
    for attempt in (lambda: load_model(tmp_path, split.train), lambda: train(config, split, tmp_path, progress=False)):
        with pytest.raises(DamagedFileError, match=f"{CHECKPOINT} is damaged .*delete it and run the same training command"):
            attempt()


def test_metrics_log_cut_short_by_a_kill_still_resumes(tmp_path):
    from embed.runs import trim_metrics

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "loss": 1.5}\n{"epoch": 3, "lo')
    trim_metrics(log, "epoch", 2)
    assert log.read_text() == '{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "loss": 1.5}\n'
    trim_metrics(log, "epoch", 1)
    assert log.read_text() == '{"epoch": 1, "loss": 2.0}\n'
