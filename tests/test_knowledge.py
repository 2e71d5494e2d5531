"""Text encoder, concept features, knowledge-encoder training (KAD) and knowledge fusion (ERNIE)."""

from __future__ import annotations

import json
import math
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig

from embed.contrastive import SoftInfoNCE, soft_targets
from embed.features import concept_features, concept_text, concept_texts
from embed.fusion_inputs import entity_inputs
from embed.knowledge import KnowledgeEncoderConfig, embed_texts, train_knowledge_encoder, training_edges
from embed.pairs import KnowledgePairs, knowledge_pairs
from embed.runs import CHECKPOINT, METRICS
from embed.triples import Triples, split_triples
from encoders.fusion import FusionConfig, KnowledgeFusion
from encoders.text import TextEncoder
from extract.model import Mention
from kg.problems import ProblemLog
from kg.relations import RELATION_TYPES
from kg.semgroups import read_semgroups
from kg.tables import CONCEPT_SCHEMA, RELATION_SCHEMA, GraphTables, read_tables

TINY = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def tiny_encoder(seed: int = 0) -> TextEncoder:
    """A randomly initialised 2-layer BERT with the bundled MiniLM tokenizer: built offline, in milliseconds."""
    torch.manual_seed(seed)
    return TextEncoder.from_config(TINY, device="cpu", max_length=32)


def concept(cid: str, name: str, synonyms: tuple[str, ...] = (), definition: str = "") -> dict:
    return {"id": cid, "name": name, "synonyms": list(synonyms), "semantic_types": [], "group": "DISO",
            "definition": definition, "sources": []}


def relation(head: str, rtype: str, tail: str, rela: str, support: int = 0) -> dict:
    return {"head": head, "tail": tail, "type": rtype, "rel": "RO", "rela": rela, "source": "TEST", "support": support}


def small_tables() -> GraphTables:
    concepts = [
        concept("C1", "pleural effusion", ("Pleural Effusion", "pleural fluid", "effusion")),
        concept("C2", "pneumothorax", ("pneumothoraces",), "Air in the pleural space."),
        concept("C3", "pleural disease"),
        concept("C4", "pleura", ("pleural membrane",)),
        concept("C5", "isolated finding"),  # no synonyms, definition or edges
    ]
    relations = [
        relation("C1", "IS_A", "C3", "isa"), relation("C2", "IS_A", "C3", "isa"),
        relation("C1", "LOCATED_AT", "C4", "located_at"), relation("C2", "CO_OCCURS_WITH", "C1", "co_occurs_with", 9),
    ]  # fmt: skip
    return GraphTables(pa.Table.from_pylist(concepts, CONCEPT_SCHEMA), pa.Table.from_pylist(relations, RELATION_SCHEMA))


# --- text encoder -------------------------------------------------------------------------------------


def test_text_encoder_saves_and_loads_the_same_encoder(tmp_path):
    encoder = tiny_encoder()
    texts = ["pleural effusion", "a much longer text about fluid in the pleural space", "pneumothorax"]
    vectors = encoder.encode(texts, batch_size=2)
    assert vectors.shape == (3, 32) and torch.allclose(vectors.norm(dim=1), torch.ones(3))
    # Batched in length order, returned in the order given: each equals the text encoded alone.
    for text, vector in zip(texts, vectors, strict=True):
        assert torch.allclose(encoder.encode([text])[0], vector, atol=1e-6)
    encoder.save_pretrained(tmp_path / "enc")
    (tmp_path / "enc" / "other.txt").write_text("kept")
    encoder.save_pretrained(tmp_path / "enc")  # saving again replaces its own files, leaves others
    loaded = TextEncoder.from_pretrained(tmp_path / "enc", device="cpu")
    assert (tmp_path / "enc" / "other.txt").read_text() == "kept"
    assert loaded.config.max_length == 32 and loaded.config.pooling == "mean"
    assert torch.equal(loaded.encode(texts), vectors)
    assert loaded.fingerprint() == encoder.fingerprint() != tiny_encoder(seed=1).fingerprint()


def test_text_encoder_forward_has_gradients_and_token_outputs():
    encoder = tiny_encoder()
    batch = encoder.tokenize(["Small left pleural effusion.", "No pneumothorax."], offsets=True)
    assert batch["offset_mapping"].shape == (*batch["input_ids"].shape, 2)
    states = encoder.token_states(batch)
    assert states.shape == (*batch["input_ids"].shape, 32)
    encoder(batch).sum().backward()
    assert encoder.model.embeddings.word_embeddings.weight.grad is not None


# --- concept features ---------------------------------------------------------------------------------


def test_concept_text_deduplicates_and_bounds():
    assert concept_text("pleural effusion", ["Pleural Effusion", "effusion", "EFFUSION"], "Fluid.") == \
        "pleural effusion; effusion: Fluid."
    assert concept_text("a", [f"s{i}" for i in range(20)], "", max_synonyms=2) == "a; s0; s1"
    assert len(concept_text("a", [], "word " * 500)) == 512


def test_concept_features_in_table_order_and_cached(tmp_path, monkeypatch):
    tables = small_tables()
    encoder = tiny_encoder()
    features = concept_features(tables, encoder, cache_dir=tmp_path, progress=False)
    texts = concept_texts(tables.concepts)
    assert features.shape == (5, 32) and torch.allclose(features, encoder.encode(texts), atol=1e-6)
    assert len(list(tmp_path.glob("concept-features-*.safetensors"))) == 1
    monkeypatch.setattr(TextEncoder, "encode", lambda *a, **k: pytest.fail("encoded again instead of cached"))
    assert torch.equal(concept_features(tables, encoder, cache_dir=tmp_path, progress=False), features)
    monkeypatch.undo()
    reversed_concepts = tables.concepts.take(pa.array([4, 3, 2, 1, 0]))
    reversed_features = concept_features(reversed_concepts, encoder, cache_dir=tmp_path, progress=False)
    assert torch.allclose(reversed_features, features.flip(0), atol=1e-6)
    assert len(list(tmp_path.glob("concept-features-*.safetensors"))) == 2  # other texts, other key
    assert concept_features(tables, tiny_encoder(seed=1), cache_dir=tmp_path, progress=False).shape == (5, 32)
    assert len(list(tmp_path.glob("concept-features-*.safetensors"))) == 3  # other encoder, other key


# --- contrastive loss and pairs -----------------------------------------------------------------------


def test_soft_info_nce_by_hand():
    left = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    right = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([7, 7, 3])  # pairs 0 and 1 name one concept
    assert torch.equal(soft_targets(labels), torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    e = math.e
    # Temperature 1: logits are the dot products. Left to right, rows [1,0,0], [1,0,0], [0,1,1] against
    # targets [.5,.5,0], [.5,.5,0], [0,0,1]; right to left, rows [1,1,0], [0,0,1], [0,0,1].
    left_to_right = (2 * (math.log(e + 2) - 0.5) + math.log(2 * e + 1) - 1) / 3
    right_to_left = (math.log(2 * e + 1) - 1 + math.log(e + 2) + math.log(e + 2) - 1) / 3
    loss = SoftInfoNCE(temperature=1.0)(left, right, labels)
    assert loss.item() == pytest.approx((left_to_right + right_to_left) / 2, rel=1e-6)
    # With distinct labels it is CLIP's loss, at scale 1 / temperature.
    a, b = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(4, 8), dim=1)
    logits, diagonal = 20 * a @ b.T, torch.arange(4)
    clip = (F.cross_entropy(logits, diagonal) + F.cross_entropy(logits.T, diagonal)) / 2
    assert SoftInfoNCE(temperature=0.05)(a, b, torch.arange(4)).item() == pytest.approx(clip.item(), rel=1e-5)
    assert not SoftInfoNCE().logit_scale.requires_grad and SoftInfoNCE(learnable=True).logit_scale.requires_grad


def test_knowledge_pairs_by_hand():
    pairs = knowledge_pairs(small_tables(), "[SEP]", relations=("IS_A", "LOCATED_AT"))
    by_label = {}
    for left, right, label in zip(pairs.left, pairs.right, pairs.labels.tolist(), strict=True):
        by_label.setdefault(label, []).append((left, right))
    assert by_label == {
        0: [("pleural effusion", "pleural fluid"), ("pleural effusion", "effusion")],  # "Pleural Effusion" dropped
        1: [("pneumothorax", "pneumothoraces"), ("pneumothorax", "Air in the pleural space.")],
        2: [("pleural effusion [SEP] is a", "pleural disease"), ("pneumothorax [SEP] is a", "pleural disease")],
        3: [("pleura", "pleural membrane"), ("pleural effusion [SEP] located at", "pleura")],
    }  # the isolated concept has no pairs; co-occurrence was not asked for
    assert pairs.counts.tolist() == [2, 2, 2, 2] and pairs.descriptions.tolist() == [2, 2, 0, 1]
    cooccurrence = ("pneumothorax [SEP] co occurs with", "pleural effusion")
    default, every_type = knowledge_pairs(small_tables(), "[SEP]"), knowledge_pairs(small_tables(), "[SEP]", RELATION_TYPES)
    assert cooccurrence not in zip(default.left, default.right) and cooccurrence in zip(every_type.left, every_type.right)
    capped = knowledge_pairs(small_tables(), "[SEP]", max_per_concept=1)
    assert capped.counts.tolist() == [1, 1, 1, 1] and capped.descriptions.tolist() == [1, 1, 0, 1]


def test_batches_hold_whole_groups_alternating_descriptions_and_relations():
    generator = torch.Generator().manual_seed(0)
    pairs = knowledge_pairs(small_tables(), "[SEP]", relations=("IS_A", "LOCATED_AT"))
    for _ in range(20):
        index = pairs.sample(batch_size=5, per_concept=2, generator=generator)
        assert len(index) == 4 and len(set(index.tolist())) == 4  # two whole concepts: a third would not fit
        assert pairs.labels[index].unique(return_counts=True)[1].tolist() == [2, 2]
    # One concept, three descriptions then three relations: two pairs are always one of each.
    hub = KnowledgePairs([f"l{i}" for i in range(6)], [f"r{i}" for i in range(6)], torch.zeros(6, dtype=torch.long),
                         torch.tensor([0]), torch.tensor([6]), torch.tensor([3]))
    drawn = [sorted(hub.sample(2, 2, generator).tolist()) for _ in range(30)]
    assert all(a < 3 <= b for a, b in drawn) and len({tuple(d) for d in drawn}) > 3


# --- knowledge encoder training -----------------------------------------------------------------------


def tiny_run_config(tmp_path, **changes) -> KnowledgeEncoderConfig:
    start = tmp_path / "start"
    if not start.exists():
        tiny_encoder().save_pretrained(start)
    return KnowledgeEncoderConfig(**{"encoder": str(start), "steps": 6, "batch_size": 4, "pairs_per_concept": 2,
                                     "lr": 1e-3, "checkpoint_every": 2, "max_length": 16, "device": "cpu", **changes})


def test_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    tables = small_tables()
    config = tiny_run_config(tmp_path)
    straight = train_knowledge_encoder(tables, tmp_path / "straight", config, progress=False)

    calls = {"n": 0}
    forward = SoftInfoNCE.forward

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 6:  # step 6 dies; the checkpoint of step 4 survives, step 5 is logged but lost
            raise KeyboardInterrupt
        return forward(self, *args)

    monkeypatch.setattr(SoftInfoNCE, "forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_knowledge_encoder(tables, tmp_path / "resumed", config, progress=False)
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["step"] == 4
    resumed = train_knowledge_encoder(tables, tmp_path / "resumed", config, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / METRICS).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert torch.equal(TextEncoder.from_pretrained(tmp_path / "resumed", device="cpu").encode(["effusion"]),
                       straight.encode(["effusion"]))
    with pytest.raises(ValueError, match="another run"):
        train_knowledge_encoder(tables, tmp_path / "resumed", tiny_run_config(tmp_path, lr=0.5), progress=False)


# --- knowledge fusion ---------------------------------------------------------------------------------


REPORT = "Small left pleural effusion. No pneumothorax."


def mention(cid: str, text: str, start: int) -> Mention:
    return Mention(cid, text, text, start, start + len(text), "FINDINGS", "present", None, 1.0, [])


def test_entity_inputs_align_mentions_to_tokens():
    encoder = tiny_encoder()
    batch = encoder.tokenize([REPORT, "Normal heart."], offsets=True)
    tokens = encoder.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    mentions = [[mention("E", "effusion", REPORT.index("effusion")),  # inside the longer mention: loses
                 mention("PE", "pleural effusion", REPORT.index("pleural")),
                 mention("PTX", "pneumothorax", REPORT.index("pneumothorax")),
                 mention("UNKNOWN", "Small", 0)], []]
    rows = {"E": 0, "PE": 1, "PTX": 2}
    vectors = torch.arange(12, dtype=torch.float).reshape(3, 4) + 1
    entities, mask = entity_inputs(mentions, batch["offset_mapping"], rows, vectors)
    assert entities.shape == (2, batch["input_ids"].shape[1], 4) and mask.shape == batch["input_ids"].shape
    linked = [(token, tuple(entities[0, i].tolist())) for i, token in enumerate(tokens) if mask[0, i]]
    # "pleural" and "pneumothorax" are several word pieces each; every piece carries the concept.
    assert "".join(t.removeprefix("##") for t, _ in linked) == "pleuraleffusionpneumothorax"
    assert {v for t, v in linked} == {tuple(vectors[1].tolist()), tuple(vectors[2].tolist())}
    assert not mask[1].any() and not entities[~mask].any()


def test_fusion_shapes_and_masking():
    encoder = tiny_encoder()
    batch = encoder.tokenize([REPORT], offsets=True)
    mentions = [[mention("PE", "pleural effusion", REPORT.index("pleural"))]]
    vectors = torch.randn(1, 8)
    entities, mask = entity_inputs(mentions, batch["offset_mapping"], {"PE": 0}, vectors)
    fusion = KnowledgeFusion(FusionConfig(text_dim=32, entity_dim=8)).eval()
    states = encoder.token_states(batch)
    tokens, fused_entities = fusion(states, entities, mask)
    assert tokens.shape == states.shape and fused_entities.shape == entities.shape
    assert not fused_entities[~mask].any() and fused_entities[mask].abs().sum() > 0
    # Only tokens inside a mention see the entity: other entity vectors change those tokens alone.
    other, _ = fusion(states, entities * 3, mask)
    assert torch.equal(other[~mask], tokens[~mask]) and not torch.allclose(other[mask], tokens[mask])


# --- the real thing: MiniLM fine-tuned on the open radiology graph --------------------------------------


PHRASES = ["pleural effusion", "effusion", "fluid in the pleural space", "pneumothorax"]


def separated(similarity: torch.Tensor) -> bool:
    """Every pairwise cosine among the first three phrases exceeds each one's cosine to pneumothorax."""
    among = min(similarity[0, 1], similarity[0, 2], similarity[1, 2])
    return bool(among > similarity[:3, 3].max())


def chest_findings(tables: GraphTables) -> GraphTables:
    """The concepts that CheXpert or IU X-ray labels map to (186 in the open graph), and every edge: pairs
    come only from edges between kept concepts."""
    sources = tables.concepts["sources"]
    flat = pc.list_flatten(sources)
    labelled = pc.or_(pc.starts_with(flat, "CHEXPERT:"), pc.starts_with(flat, "IUXRAY:"))
    return GraphTables(tables.concepts.take(pc.unique(pc.filter(pc.list_parent_indices(sources), labelled))),
                       tables.relations)


def test_the_knowledge_encoder_trains_on_exactly_the_edges_that_link_prediction_trains_on(open_kg_dir):
    """An encoder fine-tuned on every edge would carry the test edges into a link predictor over its features."""
    tables = read_tables(open_kg_dir, ProblemLog())

    def named(triples: Triples) -> set[tuple[str, str, str]]:
        e, r = triples.entity_names, triples.relation_names
        return {(e[h], r[k], e[t]) for h, k, t in triples.stacked().tolist()}

    split = split_triples(Triples.from_tables(tables), 0.1, 0.2, seed=3)  # medkg embed train --seed 3 --test 0.2
    kept = training_edges(tables, KnowledgeEncoderConfig(seed=3, held_out=(0.1, 0.2)))
    assert named(Triples.from_tables(kept)) == named(split.train)
    assert kept.relations.num_rows < tables.relations.num_rows * 0.75 and kept.concepts.equals(tables.concepts)
    assert training_edges(tables, KnowledgeEncoderConfig(held_out=(0, 0))).relations.equals(tables.relations)
    with pytest.raises(ValueError, match="held_out"):
        KnowledgeEncoderConfig(held_out=(0.5, 0.5))


def test_knowledge_encoder_learns_the_graph_synonyms(open_kg_dir, data_dir, tmp_path):
    """MiniLM puts "effusion" nearer "pneumothorax" than "fluid in the pleural space"; 40 steps on the
    chest findings' synonyms, definitions and hierarchy (no test phrase among them) fix that."""
    tables = read_tables(open_kg_dir, ProblemLog(), read_semgroups(data_dir / "vocab" / "umls" / "SemGroups.txt"))
    findings = chest_findings(tables)
    # held_out (0, 0): the chest findings keep the whole graph's edges, not a graph that embed train splits
    config = KnowledgeEncoderConfig(steps=40, batch_size=32, lr=2e-4, max_length=32, checkpoint_every=40, device="cpu",
                                    held_out=(0, 0))
    pairs = knowledge_pairs(findings, "[SEP]", config.relations)
    assert not any("fluid in the pleural space" in t.lower() for t in pairs.left + pairs.right)

    before = embed_texts(None, PHRASES, device="cpu")
    similarity = before @ before.T
    assert not separated(similarity) and similarity[1, 2] < similarity[1, 3]  # effusion: 0.28 to the fluid, 0.36 to ptx
    start = time.perf_counter()
    train_knowledge_encoder(findings, tmp_path / "kad", config, progress=False)
    seconds = time.perf_counter() - start
    after = embed_texts(tmp_path / "kad", PHRASES, device="cpu")
    similarity = after @ after.T
    print(f"\ntrained {config.steps} steps in {seconds:.1f} s; cosines after:\n{similarity}")
    assert separated(similarity)
