"""From a graph to a trained link-prediction run and its concept vectors: read the graph (RRF or a database),
split its triples, encode each concept's text once, train, and read the results back.

These are the steps behind `medkg embed ...`; the API only formats what they return. Concept text
vectors are cached by digest in `cache_dir` (default `$MEDKG_HOME/features`), so training and
`nearest_concepts` share one encoding of a graph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch import Tensor

from encoders.text import TextEncoder
from graphdb.uri import medkg_home
from kg.errors import InputError, MissingInputError
from kg.problems import ProblemLog
from kg.tables import GraphTables

from .features import concept_features, concepts_in_order
from .models import KGEConfig, LinkPredictor
from .run_data import check_source, has_run_data, load_run_data, read_source, save_run_data
from .runs import CHECKPOINT, METRICS, read_metrics
from .train import load_model
from .train import train as train_model
from .triples import Split, Triples, split_triples


def default_features_cache() -> Path:
    return medkg_home() / "features"


def read_graph(kg: Path | None = None, graph: str | None = None, problems: ProblemLog | None = None) -> GraphTables:
    """The graph of RRF directory `kg` or of database `graph` (exactly one of them) as Arrow tables."""
    if (kg is None) == (graph is None):
        raise InputError("give the graph as --kg DIR (RRF) or --graph URI (a graph database), exactly one")
    return read_source(kg if kg is not None else graph, problems if problems is not None else ProblemLog())


def concept_vectors(tables: GraphTables, encoder: TextEncoder, progress: bool = True, order: list[str] | None = None,
                    cache_dir: Path | None = None) -> tuple[pa.Table, Tensor]:
    """The concepts in `order` (default: sorted by id, the entity order of training) and their unit text vectors."""
    concepts = concepts_in_order(tables.concepts, order)
    return concepts, concept_features(concepts, encoder, cache_dir or default_features_cache(), progress=progress)


def text_features(tables: GraphTables, entity_names: list[str], text_encoder: Path | None = None, device: str = "",
                  progress: bool = True, cache_dir: Path | None = None) -> Tensor:
    """One text vector per entity of `entity_names`, by the encoder in `text_encoder` (default: the bundled MiniLM)."""
    encoder = TextEncoder.from_pretrained(text_encoder, device=device or None)
    return concept_vectors(tables, encoder, progress, entity_names, cache_dir)[1]


def prepare_run(out: Path, config: KGEConfig, kg: Path | None = None, graph: str | None = None,
                text_encoder: Path | None = None, valid: float = 0.1, test: float = 0.1, progress: bool = True,
                problems: ProblemLog | None = None, cache_dir: Path | None = None) -> tuple[Split, Tensor | None]:
    """The split and text features a run trains on: read from `out` when it has them, else made from the graph
    and kept there (so a resumed run trains on exactly the same data, even if the graph has changed since)."""
    out = Path(out)
    source = kg if kg is not None else graph
    if not has_run_data(out):
        tables = read_graph(kg, graph, problems)
        triples = Triples.from_tables(tables)
        if not len(triples):
            raise InputError("the graph has no relations to train on")
        split = split_triples(triples, valid, test, config.seed)
        features = (text_features(tables, triples.entity_names, text_encoder, config.device, progress, cache_dir)
                    if config.text_features else None)
        save_run_data(out, split, features, source, triples)
    elif source is not None:  # a run continued with its graph named: it must be the graph the run was made from
        check_source(out, source, Triples.from_tables(read_graph(kg, graph, problems)))
    split, features = load_run_data(out)
    if config.text_features != (features is not None):
        raise InputError(f"{out} was trained {'without' if features is None else 'with'} text features; "
                         "pass the same --no-text-features setting, or use a new run directory")
    return split, features


@dataclass
class TrainResult:
    config: KGEConfig
    split: Split
    metrics: list[dict[str, Any]]  # the run's whole log, one record per epoch
    seconds: float  # training time of this call


def train_run(out: Path, config: KGEConfig, kg: Path | None = None, graph: str | None = None,
              text_encoder: Path | None = None, valid: float = 0.1, test: float = 0.1, progress: bool = True,
              problems: ProblemLog | None = None, cache_dir: Path | None = None) -> TrainResult:
    """Train (or resume) the run in `out` to `config.epochs` epochs."""
    split, features = prepare_run(out, config, kg, graph, text_encoder, valid, test, progress, problems, cache_dir)
    started = time.perf_counter()
    train_model(config, split, out, progress, features)
    return TrainResult(config, split, read_metrics(Path(out) / METRICS), time.perf_counter() - started)


def load_run(run: Path, device: str = "") -> tuple[LinkPredictor, Split]:
    """The trained model of a run directory and the split it was trained on."""
    run = Path(run)
    if not (run / CHECKPOINT).exists():
        raise MissingInputError(f"{run} holds no trained model (no checkpoint.pt); train one with `medkg embed train`")
    split, features = load_run_data(run)
    return load_model(run, split.train, device, features), split


def run_vectors(run: Path, device: str = "") -> tuple[list[str], Tensor]:
    """(concept ids, [N, D] vectors): the model's entity rows, after its GNN encoder if it has one."""
    model, split = load_run(run, device)
    with torch.no_grad():
        vectors = model.concept_vectors().detach().float().cpu().contiguous()
    return split.train.entity_names, vectors


def nearest_concepts(texts: list[str], tables: GraphTables, encoder: TextEncoder, limit: int = 5, progress: bool = True,
                     cache_dir: Path | None = None) -> list[list[tuple[str, str, float]]]:
    """For each text, up to `limit` (concept id, name, cosine) of the concepts whose text lies nearest it."""
    concepts, vectors = concept_vectors(tables, encoder, progress, cache_dir=cache_dir)
    queries = encoder.encode(texts)
    scores, rows = (queries @ vectors.to(queries.device).T).topk(min(limit, len(vectors)), dim=1)
    ids, names = concepts["id"].to_pylist(), concepts["name"].to_pylist()
    return [[(ids[r], names[r], float(s)) for s, r in zip(row_scores, row_ids)]
            for row_scores, row_ids in zip(scores.tolist(), rows.tolist())]
