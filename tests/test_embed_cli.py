"""Knowledge embedding end to end: triples read in Arrow from RRF and from the graph database, vectors
stored on concepts, `medkg embed train|eval|export` and `medkg kg similar`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from embed.features import concept_texts
from embed.models import KGEConfig, build_model
from embed.triples import Triples
from encoders.text import TextEncoder
from graphdb.embedded import EmbeddedStore
from graphdb.uri import open_store
from kg.graph import Concept, KnowledgeGraph, Relation
from kg.problems import ProblemLog
from kg.tables import read_tables
from kg.write import write_graph_rrf
from medkg.api.embed import load_run
from medkg.cli import main
from tests.graphs import small_graph


def test_triples_from_arrow_tables_equal_those_from_networkx(open_kg_dir, open_kg):
    from_tables = Triples.from_tables(read_tables(open_kg_dir, ProblemLog()))
    from_graph = Triples.from_graph(open_kg)
    assert from_tables.entity_names == from_graph.entity_names
    assert from_tables.relation_names == from_graph.relation_names == ["co_occurs_with", "has_modifier", "isa", "located_at"]
    assert torch.equal(from_tables.stacked(), from_graph.stacked())
    assert len(from_tables) > 60_000


def test_the_database_gives_back_the_triples_it_was_loaded_with(open_kg_dir, open_graph_uri):
    with open_store(open_graph_uri) as store:
        tables = store.tables()
    assert tables.concepts.num_rows > 50_000
    stored, read = Triples.from_tables(tables), Triples.from_tables(read_tables(open_kg_dir, ProblemLog()))
    assert stored.entity_names == read.entity_names and stored.relation_names == read.relation_names
    assert torch.equal(stored.stacked(), read.stacked())


def test_text_features_place_concepts_the_graph_never_trained():
    triples = Triples.from_arrays([0, 1], [0, 0], [1, 2], num_entities=4)  # entity 3 has no edge
    features = torch.randn(4, 5)
    model = build_model(KGEConfig(model="distmult", dim=3, text_features=True), triples, features)
    table = model.entity_table().detach()
    assert torch.allclose(table, features @ model.project.weight.T.detach())  # residual rows start at zero
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model.score(triples.heads, triples.relations, triples.tails).sum().neg().backward()
    optimizer.step()
    assert model.kge.node_emb.weight[3].abs().sum() == 0  # no edge, no residual: still its text
    assert model.kge.node_emb.weight[:3].abs().sum() > 0
    with pytest.raises(ValueError, match="one feature row per entity"):
        build_model(KGEConfig(model="distmult", dim=3, text_features=True), triples, features[:3])


def run_cli(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_train_eval_export_and_similar_from_the_database(open_graph_uri, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDKG_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    common = ["embed", "train", "--graph", open_graph_uri, "--model", "distmult", "--no-text-features", "--out", str(run), "-q"]
    out = run_cli(capsys, *common, "--epochs", "1", "--no-structure")
    assert "54,899 concepts" in out and "1 epochs" in out and "structure" not in out
    assert not (run / "ensemble.json").exists()
    out = run_cli(capsys, *common, "--epochs", "2")  # resumes: one more epoch, then the ensemble with the structure
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and log[1]["loss"] < log[0]["loss"]
    ensemble = json.loads((run / "ensemble.json").read_text())
    assert set(ensemble["weights"]) == {"distmult", "degree prior"}  # no text features: no neighbour-text scores
    assert ensemble["never_self"] == ["co_occurs_with", "has_modifier", "isa", "located_at"]  # no self-loops
    assert "with the graph's structure: valid MRR" in out
    assert ensemble["valid_mrr"] >= max(ensemble["alone"].values())

    metrics = json.loads(run_cli(capsys, "embed", "eval", str(run), "--json"))
    assert set(metrics) == {"mrr", "hits@1", "hits@3", "hits@10", "count", "per_relation"}
    assert 0 < metrics["hits@1"] <= metrics["hits@3"] <= metrics["hits@10"] <= 1 and 0 < metrics["mrr"] <= 1
    assert set(metrics["per_relation"]) == {"co_occurs_with", "has_modifier", "isa", "located_at"}
    assert sum(m["count"] for m in metrics["per_relation"].values()) == metrics["count"]
    out = run_cli(capsys, "embed", "eval", str(run), "--part", "valid")
    assert "ranked by the model with the graph's structure: distmult" in out and "MRR" in out
    assert "never its own answer for co_occurs_with, has_modifier, isa, located_at" in out
    alone = json.loads(run_cli(capsys, "embed", "eval", str(run), "--json", "--model-only"))
    assert alone["count"] == metrics["count"] and alone["mrr"] != metrics["mrr"]

    db = tmp_path / "copy"
    with EmbeddedStore(db, read_only=False) as store:
        store.load(small_graph(), progress=False)  # another graph: none of the run's concepts
    out = run_cli(capsys, "embed", "export", str(run), "--graph", f"embedded://{db}")
    assert "stored 0 vectors" in out and "54,899 concepts are not in it" in out
    ids = json.loads((run / "concept_ids.json").read_text())
    vectors = load_file(str(run / "concept_vectors.safetensors"))["vectors"]
    assert vectors.shape == (len(ids), 128) and len(ids) == 54_899 and np.isfinite(vectors).all()

    out = run_cli(capsys, "embed", "export", str(run), "--out", str(tmp_path / "vectors"), "--graph", open_graph_uri)
    assert "stored 54,899 vectors" in out
    similar = json.loads(run_cli(capsys, "kg", "similar", "RADLEX:RID34539", "--graph", open_graph_uri, "--json", "--limit", "5"))
    assert len(similar) == 5 and all(s["id"] != "RADLEX:RID34539" for s in similar)
    scores = [s["similarity"] for s in similar]
    assert scores == sorted(scores, reverse=True)
    row = ids.index("RADLEX:RID34539")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    best = [ids[i] for i in np.argsort(-(unit @ unit[row]))[1:6]]
    assert [s["id"] for s in similar] == best


def test_text_feature_run_on_a_graph_written_as_rrf(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDKG_HOME", str(tmp_path / "home"))
    kg_dir, run = tmp_path / "kg", tmp_path / "run"
    write_graph_rrf(small_graph(), kg_dir)
    out = run_cli(capsys, "embed", "train", "--kg", str(kg_dir), "--model", "rotate", "--out", str(run), "--epochs", "3",
                  "--dim", "16", "-q")
    assert "rotate: 7 concepts" in out and "3 epochs" in out
    assert list((tmp_path / "home" / "features").glob("concept-features-*.safetensors"))  # cached for the next run

    # Feature row i is the text of entity i.
    entities = json.loads((run / "vocab.json").read_text())["entities"]
    concepts = read_tables(kg_dir, ProblemLog()).concepts.sort_by("id")
    assert entities == concepts["id"].to_pylist()
    expected = TextEncoder.from_pretrained().encode(concept_texts(concepts))
    assert torch.allclose(torch.from_numpy(load_file(str(run / "features.safetensors"))["features"]), expected, atol=1e-5)

    run_cli(capsys, "embed", "export", str(run))
    vectors = torch.from_numpy(load_file(str(run / "concept_vectors.safetensors"))["vectors"])
    ids = json.loads((run / "concept_ids.json").read_text())
    assert vectors.shape == (7, 32) and ids == entities  # RotatE rows: [real | imaginary]
    model, _ = load_run(run)
    with torch.no_grad():
        text_only = model.project(model.features)
    row = ids.index("T:isolated")  # no edge: only ever a sampled negative, so its row stays near its text's
    assert torch.cosine_similarity(vectors[row], text_only[row], dim=0) > 0.9
    assert run_cli(capsys, "embed", "train", "--kg", str(kg_dir), "--model", "rotate", "--out", str(run), "--epochs", "3",
                   "--dim", "16", "-q")
    assert main(["embed", "train", "--kg", str(kg_dir), "--model", "rotate", "--out", str(run), "--epochs", "3", "--dim", "16",
                 "--no-text-features"]) == 2
    assert "trained with text features" in capsys.readouterr().err


def test_embed_errors_name_what_is_wrong(tmp_path, capsys):
    lone = KnowledgeGraph()
    lone.add_concept(Concept("T:lone", "lone concept", [], ["T047"], "DISO", "", ["TEST:lone"]))
    write_graph_rrf(lone, tmp_path / "lone")
    assert main(["embed", "train", "--kg", str(tmp_path / "lone"), "--out", str(tmp_path / "r0")]) == 2
    assert "no relations" in capsys.readouterr().err
    assert main(["embed", "eval", str(tmp_path / "nothing")]) == 2
    assert "nothing holds no trained model" in capsys.readouterr().err
    assert main(["embed", "train", "--out", str(tmp_path / "r"), "--model", "transd", "--kg", str(tmp_path)]) == 2
    assert "unknown model 'transd'" in capsys.readouterr().err
    assert main(["embed", "train", "--out", str(tmp_path / "r"), "--model", "transe"]) == 2
    assert "--kg DIR" in capsys.readouterr().err
    assert main(["embed", "train", "--kg", str(tmp_path), "--out", str(tmp_path / "r"), "--epochs", "-1"]) == 2
    err = capsys.readouterr().err
    assert "text: dim, batch_size and negatives must be positive, epochs non-negative" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_knowledge_encoder_and_free_text_from_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDKG_HOME", str(tmp_path / "home"))
    kg_dir, encoder = tmp_path / "kg", tmp_path / "encoder"
    write_graph_rrf(small_graph(), kg_dir)
    out = run_cli(capsys, "embed", "knowledge", "--kg", str(kg_dir), "--out", str(encoder), "--steps", "2", "--batch-size", "4",
                  "--max-length", "24", "-q")
    assert "2 steps" in out and (encoder / "model.safetensors").exists() and (encoder / "text_encoder.json").exists()
    config = json.loads((encoder / "knowledge.json").read_text())
    assert config["held_out"] == [0.1, 0.1] and config["max_length"] == 24  # held out: embed train's split
    assert main(["embed", "knowledge", "--kg", str(kg_dir), "--out", str(tmp_path / "e2"), "--held-out", "0.6", "0.5"]) == 2
    assert "held_out is (valid, test)" in capsys.readouterr().err
    assert main(["embed", "knowledge", "--kg", str(kg_dir), "--out", str(tmp_path / "e2"), "--max-length", "0"]) == 2
    assert "max_length >= 1" in capsys.readouterr().err
    matches = json.loads(run_cli(capsys, "embed", "text", "fluid around the lung", "a collapsed lung", "--kg", str(kg_dir),
                                 "--encoder", str(encoder), "--limit", "2", "--json", "-q"))
    assert [m["text"] for m in matches] == ["fluid around the lung"] * 2 + ["a collapsed lung"] * 2
    assert matches[0]["id"] == "T:effusion" and matches[2]["id"] == "T:ptx"  # by their synonyms
    assert matches[0]["similarity"] >= matches[1]["similarity"]


def test_text_model_run_and_what_a_run_directory_refuses(tmp_path, capsys, monkeypatch):
    import embed.train as training

    monkeypatch.setenv("MEDKG_HOME", str(tmp_path / "home"))
    kg_dir, other_dir, run = tmp_path / "kg", tmp_path / "other", tmp_path / "run"
    write_graph_rrf(small_graph(), kg_dir)
    out = run_cli(capsys, "embed", "train", "--kg", str(kg_dir), "--model", "text", "--out", str(run), "--epochs", "2", "-q")
    assert "text: 7 concepts" in out and "2 epochs" in out
    assert main(["embed", "combine", str(run)]) == 2  # 5 triples: none left for validation
    assert "no validation triples" in capsys.readouterr().err
    assert main(["embed", "combine", str(run), "--with", str(run)]) == 2
    assert "in its own ensemble only once" in capsys.readouterr().err
    # Runs in directories of the same name join an ensemble under their whole paths, not one in place of the other.
    from embed.combined import _others
    from embed.run_data import load_run_data

    twins = [tmp_path / side / "run" for side in ("a", "b")]
    for twin in twins:
        run_cli(capsys, "embed", "train", "--kg", str(kg_dir), "--model", "text", "--out", str(twin), "--epochs", "1", "-q")
    assert set(_others(run, load_run_data(run)[0], twins, "cpu")) == {f"text ({twin.resolve()})" for twin in twins}
    assert set(_others(run, load_run_data(run)[0], twins[:1], "cpu")) == {"text (run)"}
    run_cli(capsys, "embed", "export", str(run))
    vectors = torch.from_numpy(load_file(str(run / "concept_vectors.safetensors"))["vectors"])
    assert vectors.shape == (7, 384)  # the candidate side: unit vectors of the text's width
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(7))

    # Another graph into the same run directory is refused; leaving out --kg continues on the run's own data.
    other = small_graph()
    other.add_relation(Relation("T:heart", "IS_A", "T:disease", "CHD", "isa", "TEST", 0))
    write_graph_rrf(other, other_dir)
    assert main(["embed", "train", "--kg", str(other_dir), "--model", "text", "--out", str(run), "--epochs", "3", "-q"]) == 2
    assert "was made from another graph" in capsys.readouterr().err
    # ... and a run on another graph cannot join its ensemble.
    run_cli(capsys, "embed", "train", "--kg", str(other_dir), "--model", "text", "--out", str(tmp_path / "other-run"), "--epochs", "1", "-q")
    assert main(["embed", "combine", str(run), "--with", str(tmp_path / "other-run")]) == 2
    err = capsys.readouterr().err
    assert "holds another split" in err and "Traceback" not in err
    assert "3 epochs" in run_cli(capsys, "embed", "train", "--model", "text", "--out", str(run), "--epochs", "3", "-q")
    assert "3 epochs" in run_cli(capsys, "embed", "train", "--kg", str(kg_dir), "--model", "text", "--out", str(run),
                                 "--epochs", "3", "-q")  # the same graph named again: fine

    # Storing vectors into a graph database that is not there (a typo) is refused, and nothing is created.
    typo = tmp_path / "no-such-graph"
    assert main(["embed", "export", str(run), "--graph", f"embedded://{typo}"]) == 2
    assert "no graph database" in capsys.readouterr().err and not typo.exists()

    # Ctrl-C: one line saying where the checkpoint is and how to resume, no traceback.
    monkeypatch.setattr(training, "_train_epoch", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["embed", "train", "--model", "text", "--out", str(run), "--epochs", "5", "-q"]) == 130
    err = capsys.readouterr().err
    assert "checkpoint after epoch 3 of 5; run the same command again to resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    # A damaged checkpoint: every command that reads it says so and how to go on.
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:100])
    for argv in (["embed", "export", str(run)], ["embed", "train", "--model", "text", "--out", str(run), "--epochs", "4", "-q"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "checkpoint.pt is damaged" in err and "delete it" in err and "Traceback" not in err


def test_train_help_names_the_defaults_each_model_trains_with():
    from embed.presets import preset
    from medkg.cli.embed import PRESET_HELP

    rotate, text, gnn = preset("rotate"), preset("text"), preset("rgcn-distmult")
    assert PRESET_HELP["lr"] == f"{rotate.lr}; text {text.lr}"
    assert PRESET_HELP["batch_size"] == f"{rotate.batch_size}; text {text.batch_size}; GNN encoders {gnn.batch_size}"
    assert PRESET_HELP["epochs"].startswith(f"{rotate.epochs}; text {text.epochs}")
    assert PRESET_HELP["dim"].startswith(f"{rotate.dim}; text")
    assert rotate.seed == text.seed == 0
