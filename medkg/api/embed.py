"""`medkg embed ...` as Python: train link-prediction models over a graph, evaluate them, export
concept vectors (to safetensors, and onto a graph database's concepts)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from safetensors.torch import save

from embed.evaluate import evaluate as evaluate_model
from embed.features import concept_features, concepts_in_order
from embed.models import LinkPredictor
from embed.presets import preset
from embed.run_data import has_run_data, load_run_data, read_source, save_run_data
from embed.runs import CHECKPOINT, METRICS, read_metrics
from embed.train import CONFIG, load_model
from embed.train import train as train_model
from embed.triples import Triples, split_triples
from encoders.text import TextEncoder
from graphdb.uri import medkg_home, open_store
from kg.atomic import atomic_open
from kg.problems import ProblemLog
from kg.tables import GraphTables

VECTORS = "concept_vectors.safetensors"
IDS = "concept_ids.json"


@dataclass
class TrainSummary:
    run: Path
    model: str
    entities: int
    relations: int
    triples: dict[str, int]  # train / valid / test
    epochs: int
    loss: float
    seconds: float
    valid: dict[str, float] | None  # the last validation metrics, when `eval_every` asked for them

    def __str__(self) -> str:
        sizes = ", ".join(f"{n:,} {part}" for part, n in self.triples.items())
        line = (f"{self.model}: {self.entities:,} concepts, {self.relations} relations ({sizes}); "
                f"{self.epochs} epochs, loss {self.loss:.4f}, {self.seconds:.1f} s this run")
        if self.valid:
            line += f"; valid MRR {self.valid['mrr']:.3f}"
        return f"{line}\nrun directory: {self.run} (evaluate with `medkg embed eval {self.run}`)"


def train(
    out: Path, kg: Path | None = None, graph: str | None = None, model: str = "rotate", text_features: bool = True,
    text_encoder: Path | None = None, valid: float = 0.1, test: float = 0.1, progress: bool = True,
    problems: ProblemLog | None = None, **overrides: Any,
) -> TrainSummary:
    """Train (or resume) a run in `out` on the graph in RRF directory `kg` or database `graph`.

    The first call reads the graph, splits it and encodes each concept's text; all three are kept in
    `out`, so a resumed run trains on exactly the same data even if the graph has changed since.
    `overrides` are KGEConfig fields (epochs, dim, lr, ...)."""
    out = Path(out)
    config = preset(model, text_features=text_features, **overrides)
    if not has_run_data(out):
        tables = _read_graph(kg, graph, problems)
        triples = Triples.from_tables(tables)
        if not len(triples):
            raise ValueError("the graph has no relations to train on")
        split = split_triples(triples, valid, test, config.seed)
        features = _features(tables, triples.entity_names, text_encoder, config.device, progress) if text_features else None
        save_run_data(out, split, features)
    split, features = load_run_data(out)
    if text_features != (features is not None):
        raise ValueError(f"{out} was trained {'without' if features is None else 'with'} text features; "
                         "pass the same --no-text-features setting, or use a new run directory")
    started = time.perf_counter()
    train_model(config, split, out, progress, features)
    log = read_metrics(out / METRICS)
    valid_metrics = next((r["valid"] for r in reversed(log) if "valid" in r), None)
    return TrainSummary(out, config.model, split.train.num_entities, split.train.num_relations,
                        {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
                        log[-1]["epoch"] if log else 0, log[-1]["loss"] if log else float("nan"),
                        time.perf_counter() - started, valid_metrics)


def _read_graph(kg: Path | None, graph: str | None, problems: ProblemLog | None) -> GraphTables:
    if (kg is None) == (graph is None):
        raise ValueError("give the graph as --kg DIR (RRF) or --graph URI (a graph database), exactly one")
    return read_source(kg if kg is not None else graph, problems if problems is not None else ProblemLog())


def _features(tables: GraphTables, entity_names: list[str], text_encoder: Path | None, device: str, progress: bool):
    return _concept_vectors(tables, TextEncoder.from_pretrained(text_encoder, device=device or None), progress,
                            entity_names)[1]


def _concept_vectors(tables: GraphTables, encoder: TextEncoder, progress: bool,
                     order: list[str] | None = None) -> tuple[pa.Table, Any]:
    """Concepts in `order` (default: entity order) and their text vectors, cached in $MEDKG_HOME/features:
    training and `nearest_concepts` share one encoding."""
    concepts = concepts_in_order(tables.concepts, order)
    return concepts, concept_features(concepts, encoder, medkg_home() / "features", progress=progress)


def load_run(run: Path, device: str = "") -> tuple[LinkPredictor, Any]:
    """The trained model of a run directory and the split it was trained on."""
    run = Path(run)
    if not (run / CHECKPOINT).exists():
        raise FileNotFoundError(f"{run} holds no trained model (no checkpoint.pt); train one with `medkg embed train`")
    split, features = load_run_data(run)
    return load_model(run, split.train, device, features), split


def evaluate(run: Path, part: str = "test", batch_size: int = 256, device: str = "", progress: bool = True) -> dict[str, Any]:
    """Filtered MRR and Hits@1/3/10 on the run's held-out `part` (test or valid), overall and per relation."""
    if part not in ("test", "valid"):
        raise ValueError(f"part must be 'test' or 'valid', not {part!r}")
    model, split = load_run(run, device)
    triples = getattr(split, part)
    if not len(triples):
        raise ValueError(f"{run} has no {part} triples to evaluate")
    metrics = evaluate_model(model, triples, split.known, batch_size, per_relation=True, progress=progress)
    keys = ("mrr", "hits@1", "hits@3", "hits@10")
    return {**{k: round(metrics[k], 4) for k in keys}, "count": metrics["count"],
            "per_relation": {name: {**{k: round(m[k], 4) for k in keys}, "count": m["count"]}
                             for name, m in sorted(metrics["per_relation"].items())}}


@dataclass
class ExportSummary:
    vectors: Path
    ids: Path
    concepts: int
    dim: int
    stored: int | None  # concepts given a vector in the graph database, when one was named
    not_in_graph: list[str]

    def __str__(self) -> str:
        line = f"wrote {self.vectors} ({self.concepts:,} concepts x {self.dim}) and {self.ids}"
        if self.stored is not None:
            line += f"\nstored {self.stored:,} vectors in the graph database"
            if self.not_in_graph:
                line += f"; {len(self.not_in_graph):,} concepts are not in it (first: {', '.join(self.not_in_graph[:5])})"
        return line


def export(run: Path, out: Path | None = None, graph: str | None = None, device: str = "", store: bool | None = None) -> ExportSummary:
    """Concept vectors (the model's entity rows, after its GNN encoder if it has one) as safetensors plus
    the id map (`concept_ids.json`, row i is concept ids[i]); with `store` (default: when `graph` is
    given), also stored on the concepts of `graph` (None: the default database)."""
    import torch

    run = Path(run)
    out = Path(out) if out is not None else run
    model, split = load_run(run, device)
    with torch.no_grad():
        vectors = model.entity_table().detach().float().cpu().contiguous()
    ids = split.train.entity_names
    config = json.loads((run / CONFIG).read_text())
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / VECTORS, "wb") as f:
        f.write(save({"vectors": vectors}, metadata={"model": config["model"], "run": str(run.resolve())}))
    with atomic_open(out / IDS) as f:
        json.dump(ids, f)
    stored, missing = None, []
    if store if store is not None else graph is not None:
        with open_store(graph, read_only=False) as database:
            missing = database.store_embeddings(ids, vectors.numpy())
        stored = len(ids) - len(missing)
    return ExportSummary(out / VECTORS, out / IDS, len(ids), vectors.shape[1], stored, missing)


@dataclass
class KnowledgeSummary:
    run: Path
    steps: int
    loss: float
    seconds: float

    def __str__(self) -> str:
        return (f"knowledge encoder: {self.steps} steps, last loss {self.loss:.4f}, {self.seconds:.1f} s this run\n"
                f"saved to {self.run} (use it with `--text-encoder {self.run}` or `medkg embed text ... --encoder {self.run}`)")


def train_knowledge(out: Path, kg: Path | None = None, graph: str | None = None, progress: bool = True,
                    problems: ProblemLog | None = None, **overrides: Any) -> KnowledgeSummary:
    """Fine-tune a text encoder on the graph's names, synonyms, definitions and relations (resumes in `out`);
    `overrides` are KnowledgeEncoderConfig fields (steps, batch_size, lr, encoder, relations, ...)."""
    from embed.knowledge import KnowledgeEncoderConfig, train_knowledge_encoder

    config = KnowledgeEncoderConfig(**{k: v for k, v in overrides.items() if v is not None})
    tables = _read_graph(kg, graph, problems)
    started = time.perf_counter()
    train_knowledge_encoder(tables, out, config, progress)
    log = read_metrics(Path(out) / METRICS)
    last = log[-1] if log else {"step": 0, "loss": float("nan")}
    return KnowledgeSummary(Path(out), last["step"], last["loss"], time.perf_counter() - started)


@dataclass
class ConceptMatch:
    text: str
    id: str
    name: str
    similarity: float


def nearest_concepts(texts: list[str], kg: Path | None = None, graph: str | None = None, encoder: Path | None = None,
                     limit: int = 5, progress: bool = True) -> list[ConceptMatch]:
    """The concepts whose text (name, synonyms, definition) lies nearest each free text, by one encoder (a
    knowledge encoder, or the bundled MiniLM): prompts and report phrases placed among the graph's concepts.
    Concept vectors are cached in $MEDKG_HOME/features, so only the first call encodes the graph."""
    text_encoder = TextEncoder.from_pretrained(encoder)
    concepts, vectors = _concept_vectors(_read_graph(kg, graph, None), text_encoder, progress)
    queries = text_encoder.encode(texts)
    scores, rows = (queries @ vectors.to(queries.device).T).topk(min(limit, len(vectors)), dim=1)
    ids, names = concepts["id"].to_pylist(), concepts["name"].to_pylist()
    return [ConceptMatch(text, ids[r], names[r], round(float(s), 4))
            for text, row_scores, row_ids in zip(texts, scores.tolist(), rows.tolist())
            for s, r in zip(row_scores, row_ids)]
