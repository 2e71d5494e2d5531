"""What a link-prediction run trains on, kept in its run directory: the vocabulary, the split and the
text features. Evaluation, export and resumption then need only the run directory, not the graph it
came from (which may have changed since).

Files: `vocab.json` (entity and relation names, in id order), `split.safetensors` (train, valid and
test as [n, 3] id rows) and, for models with text features, `features.safetensors`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import Tensor

from graphdb.uri import open_store
from kg.atomic import atomic_open
from kg.errors import InputError, MissingInputError
from kg.problems import ProblemLog
from kg.tables import GraphTables, read_tables

from .triples import Split, Triples

VOCAB = "vocab.json"
SOURCE = "source.json"
SPLIT = "split.safetensors"
FEATURES = "features.safetensors"


def read_source(source: str | Path, problems: ProblemLog) -> GraphTables:
    """A graph from an RRF directory, or straight from a graph database given by its URI."""
    if "://" in str(source):
        with open_store(str(source)) as store:
            return store.tables()
    return read_tables(Path(source), problems)


def has_run_data(run_dir: Path) -> bool:
    return (run_dir / SPLIT).exists()


def graph_digest(triples: Triples) -> str:
    """Identifies a graph's triples (ids and names), so that a run is never continued on another graph."""
    digest = hashlib.sha256("\0".join([*triples.entity_names, "", *triples.relation_names]).encode())
    digest.update(triples.stacked().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_source(run_dir: Path, source: str | Path, triples: Triples) -> None:
    """Refuse a graph other than the one the run was made from (InputError saying how to go on); runs
    made before `source.json` existed are not checked."""
    path = run_dir / SOURCE
    if not path.exists():
        return
    made = json.loads(path.read_text())
    if made.get("graph_digest") != graph_digest(triples):
        raise InputError(f"{run_dir} was made from another graph ({made.get('source')}, {made.get('triples', 0):,} triples) "
                         f"than {source} ({len(triples):,} triples); leave out --kg/--graph to continue on the data the "
                         "run keeps, or train into a new --out directory")


def save_run_data(run_dir: Path, split: Split, features: Tensor | None, source: str | Path | None = None,
                  triples: Triples | None = None) -> None:
    """The split last: its presence is what marks the run data complete. `source` and the whole graph's
    `triples` identify the graph for later runs into the same directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if source is not None and triples is not None:
        with atomic_open(run_dir / SOURCE) as f:
            json.dump({"source": str(source), "graph_digest": graph_digest(triples), "triples": len(triples)}, f)
    with atomic_open(run_dir / VOCAB) as f:
        json.dump({"entities": split.train.entity_names, "relations": split.train.relation_names}, f)
    if features is not None:
        _save_tensors(run_dir / FEATURES, {"features": features.float().contiguous()})
    _save_tensors(run_dir / SPLIT, {part: getattr(split, part).stacked() for part in ("train", "valid", "test")})


def load_run_data(run_dir: Path) -> tuple[Split, Tensor | None]:
    if not has_run_data(run_dir):
        raise MissingInputError(f"{run_dir} is not a training run (no {SPLIT}); train one with `medkg embed train`")
    vocab = json.loads((run_dir / VOCAB).read_text())
    parts = load_file(str(run_dir / SPLIT))
    entities, relations = vocab["entities"], vocab["relations"]

    def triples(rows: Tensor) -> Triples:
        return Triples(rows[:, 0].contiguous(), rows[:, 1].contiguous(), rows[:, 2].contiguous(), len(entities),
                       len(relations), entities, relations)

    features = load_file(str(run_dir / FEATURES))["features"] if (run_dir / FEATURES).exists() else None
    return Split(triples(parts["train"]), triples(parts["valid"]), triples(parts["test"])), features


def _save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    with atomic_open(path, "wb") as f:
        f.write(save({k: v.to(torch.device("cpu")).contiguous() for k, v in tensors.items()}))
