"""How alike two entities are, for soft targets: [K, K] in [0, 1], and the vectors that say it.

`entity_similarity` is 1 on the diagonal and between an entity and any entity whose concept lies below its own on
IS_A, in either direction ("lobar pneumonia" and "pneumonia" name one finding at two depths; the relation is made
symmetric because a soft target has no direction). Every other pair gets the cosine of the two concept vectors,
sharpened: s = clamp((cos - t) / (1 - t), 0, 1) with threshold t (default 0.5). Sentence encoders put any two
findings at a positive cosine (MiniLM on the 30 ChestX-ray14 + IU entities: median 0.18, 90th percentile 0.35, 99th
0.65), so a plain clipped cosine would make every pair of findings a fifth alike and blur the soft targets; above t the
scale stretches to [0, 1], so only the few pairs the embedding places close together ("calcified granuloma" and
"granuloma", "rib fractures" and "fracture") share target mass. Without concept vectors, off-hierarchy pairs are 0.

Concept vectors come from a link-prediction export (`embed.vectors.read_vectors`, then `concept_vectors_for`) or,
failing that, from `entity_vectors`: the entity names (and a few synonyms) encoded by a text encoder, the knowledge
encoder of `medkg embed knowledge` or the bundled MiniLM. Those are also the entity queries of a KAD-style decoder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from embed.features import concept_text
from embed.vectors import ConceptVectors
from encoders.text import TextEncoder
from kg.problems import ProblemLog
from kg.tables import GraphTables, is_a_edges, reachable, read_tables

from .vocabulary import EntityVocabulary

log = logging.getLogger(__name__)
THRESHOLD = 0.5


def entity_similarity(vocab: EntityVocabulary, graph: Path | GraphTables | None = None, concept_vectors: Tensor | None = None,
                      threshold: float = THRESHOLD) -> Tensor:
    """[K, K] float32 in [0, 1] (module docstring). IS_A comes from each entity's covered concepts and, when `graph` (an
    RRF directory or its tables) is given, from the IS_A paths between the entities' own concepts too."""
    k = len(vocab)
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must lie in [0, 1), not {threshold}")
    similarity = torch.zeros(k, k)
    if concept_vectors is not None:
        if concept_vectors.shape[0] != k:
            raise ValueError(f"{concept_vectors.shape[0]} concept vectors for {k} entities")
        unit = F.normalize(concept_vectors.float(), dim=-1)
        similarity = ((unit @ unit.T - threshold) / (1 - threshold)).clamp(0, 1)
    below = torch.tensor([[vocab.ids[a] in vocab.label_concepts[b] for b in range(k)] for a in range(k)])
    if graph is not None:
        below |= _is_a_below(vocab.ids, graph)
    similarity[below | below.T | torch.eye(k, dtype=torch.bool)] = 1.0
    return similarity


def entity_texts(vocab: EntityVocabulary, synonyms: bool = False) -> list[str]:
    """`name; synonym; ...` per entity (the names alone without `synonyms`)."""
    return [concept_text(name, words if synonyms else [], "") for name, words in zip(vocab.names, vocab.synonyms)]


def entity_vectors(vocab: EntityVocabulary, text_encoder: TextEncoder | None = None, synonyms: bool = False) -> Tensor:
    """[K, D] unit vectors of the entity texts by `text_encoder` (default: the bundled MiniLM), on the CPU. The names
    alone by default, as KAD's entity queries are; `synonyms` appends the vocabulary's synonyms (the open graph's are
    few, and merges bring in some narrower terms, so they are off unless asked for)."""
    encoder = text_encoder if text_encoder is not None else TextEncoder.from_pretrained()
    return encoder.encode(entity_texts(vocab, synonyms))


def concept_vectors_for(vocab: EntityVocabulary, vectors: ConceptVectors) -> Tensor | None:
    """[K, D] rows of exported concept vectors for the entities' concepts; None (with a warning naming them) when any
    entity's concept has no row, so the caller can fall back to `entity_vectors`."""
    missing = [concept_id for concept_id in vocab.ids if concept_id not in vectors]
    if missing:
        log.warning("%d of %d entity concepts have no exported vector (first: %s)", len(missing), len(vocab),
                    ", ".join(missing[:5]))
        return None
    return vectors.rows(vocab.ids).float()


def _is_a_below(ids: list[str], graph: Path | GraphTables) -> Tensor:
    """[K, K]: entity a's concept lies below entity b's concept on IS_A."""
    tables = graph if isinstance(graph, GraphTables) else read_tables(Path(graph), ProblemLog())
    parents = is_a_edges(tables, upward=True)
    position = {concept_id: i for i, concept_id in enumerate(ids)}
    below = torch.zeros(len(ids), len(ids), dtype=torch.bool)
    for a, concept_id in enumerate(ids):
        for ancestor in reachable(concept_id, parents) - {concept_id}:
            if ancestor in position:
                below[a, position[ancestor]] = True
    return below
