"""`medkg embed ...` as Python: train link-prediction models over a graph, evaluate them, export
concept vectors (to safetensors, and onto a graph database's concepts)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embed.combined import current_fit, fit_run, read_ensemble, run_scorer
from embed.ensemble import Fit
from embed.evaluate import evaluate as evaluate_model
from embed.pipeline import default_features_cache, load_run, read_graph, run_vectors, train_run
from embed.pipeline import nearest_concepts as nearest
from embed.presets import preset
from embed.runs import METRICS, read_metrics
from embed.train import CONFIG
from embed.vectors import IDS, VECTORS, write_vectors
from encoders.text import TextEncoder
from graphdb.uri import open_store
from kg.errors import InputError
from kg.problems import ProblemLog

__all__ = ["IDS", "VECTORS", "ConceptMatch", "ExportSummary", "KnowledgeSummary", "TrainSummary", "combine", "evaluate", "export",
           "load_run", "nearest_concepts", "read_ensemble", "train", "train_knowledge"]


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
    ensemble: Fit | None = None     # the model with the graph's structure, fitted on valid (embed.combined)

    def __str__(self) -> str:
        sizes = ", ".join(f"{n:,} {part}" for part, n in self.triples.items())
        line = (f"{self.model}: {self.entities:,} concepts, {self.relations} relations ({sizes}); "
                f"{self.epochs} epochs, loss {self.loss:.4f}, {self.seconds:.1f} s this run")
        if self.valid:
            line += f"; valid MRR {self.valid['mrr']:.3f}"
        if self.ensemble:
            parts = ", ".join(f"{name} {w:g}" for name, w in self.ensemble.weights.items())
            line += (f"\nwith the graph's structure: valid MRR {self.ensemble.mrr:.3f} (the model alone "
                     f"{self.ensemble.alone[self.model]:.3f}; weights {parts})")
        return f"{line}\nrun directory: {self.run} (evaluate with `medkg embed eval {self.run}`)"


def train(
    out: Path, kg: Path | None = None, graph: str | None = None, model: str = "rotate", text_features: bool = True,
    text_encoder: Path | None = None, valid: float = 0.1, test: float = 0.1, progress: bool = True,
    problems: ProblemLog | None = None, structure: bool = True, **overrides: Any,
) -> TrainSummary:
    """Train (or resume) a run in `out` on the graph in RRF directory `kg` or database `graph`.

    The first call reads the graph, splits it and encodes each concept's text; all three are kept in
    `out`, so a resumed run trains on exactly the same data even if the graph has changed since.
    With `structure` (and a validation split), the trained model is then combined with the graph's
    structure scores, weights fitted on valid (`embed.combined`), and `evaluate` ranks with the
    combination. `overrides` are KGEConfig fields (epochs, dim, lr, ...)."""
    config = preset(model, text_features=text_features, **overrides)
    result = train_run(Path(out), config, kg, graph, text_encoder, valid, test, progress, problems, default_features_cache())
    split, log = result.split, result.metrics
    valid_metrics = next((r["valid"] for r in reversed(log) if "valid" in r), None)
    ensemble = (current_fit(Path(out)) or fit_run(Path(out), device=config.device, progress=progress)) \
        if structure and len(split.valid) else None
    return TrainSummary(Path(out), config.model, split.train.num_entities, split.train.num_relations,
                        {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
                        log[-1]["epoch"] if log else 0, log[-1]["loss"] if log else float("nan"),
                        result.seconds, valid_metrics, ensemble)


def combine(run: Path, others: list[Path] | None = None, device: str = "", progress: bool = True) -> Fit:
    """(Re)fit the run's ensemble: its model, the graph's structure scores and the models of `others` (runs
    on the same split), weights chosen on the validation split; `evaluate` ranks with it from then on."""
    return fit_run(Path(run), [Path(o) for o in others or []], device, progress)


def evaluate(run: Path, part: str = "test", batch_size: int = 256, device: str = "", progress: bool = True,
             structure: bool = True) -> dict[str, Any]:
    """Filtered MRR and Hits@1/3/10 on the run's held-out `part` (test or valid), overall and per relation:
    of the run's ensemble when it has one (see `train`), of the model alone when `structure` is False."""
    if part not in ("test", "valid"):
        raise InputError(f"part must be 'test' or 'valid', not {part!r}")
    model, split = run_scorer(Path(run), device, structure)
    triples = getattr(split, part)
    if not len(triples):
        raise InputError(f"{run} has no {part} triples to evaluate")
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
    run = Path(run)
    out = Path(out) if out is not None else run
    store = store if store is not None else graph is not None
    if store:  # before any work: a graph that is not there (a typo in its URI) is refused, not created empty
        open_store(graph).close()
    ids, vectors = run_vectors(run, device)
    config = json.loads((run / CONFIG).read_text())
    vectors_path, ids_path = write_vectors(out, ids, vectors, {"model": config["model"], "run": str(run.resolve())})
    stored, missing = None, []
    if store:
        with open_store(graph, read_only=False) as database:
            missing = database.store_embeddings(ids, vectors.numpy())
        stored = len(ids) - len(missing)
    return ExportSummary(vectors_path, ids_path, len(ids), vectors.shape[1], stored, missing)


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

    try:
        config = KnowledgeEncoderConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as error:  # a setting the user gave
        raise InputError(f"knowledge encoder: {error}") from None
    tables = read_graph(kg, graph, problems)
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
    found = nearest(texts, read_graph(kg, graph), TextEncoder.from_pretrained(encoder), limit, progress,
                    default_features_cache())
    return [ConceptMatch(text, concept_id, name, round(score, 4))
            for text, rows in zip(texts, found) for concept_id, name, score in rows]
