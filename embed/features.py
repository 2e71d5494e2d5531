"""Text node features: one vector per concept, encoded from its name, synonyms and definition.

Every concept gets a vector, in the order of the concepts table, so a concept without edges (or one that
a graph model never saw) is still placed by what it is called. Encoding the whole open graph takes
about two minutes on two CPU cores, so the result is cached, keyed by the texts and the encoder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from safetensors.torch import load_file, save
from torch import Tensor

from encoders.text import TextEncoder
from kg.atomic import atomic_open
from kg.tables import GraphTables

MAX_SYNONYMS = 8
MAX_CHARS = 512  # ~100 words: more than a short definition's worth, fewer tokens than most encoders take


def distinct_synonyms(name: str, synonyms: Sequence[str]) -> list[str]:
    """`synonyms` in order without the name and without repeats, case-insensitively ("Pleural Effusion"
    adds nothing to "pleural effusion")."""
    seen = {name.casefold()}
    kept = []
    for synonym in synonyms:
        if synonym.casefold() not in seen:
            seen.add(synonym.casefold())
            kept.append(synonym)
    return kept


def concept_text(name: str, synonyms: Sequence[str], definition: str, max_synonyms: int = MAX_SYNONYMS,
                 max_chars: int = MAX_CHARS) -> str:
    """`name; synonym; ...: definition`, at most `max_synonyms` synonyms and `max_chars` characters."""
    text = "; ".join([name, *distinct_synonyms(name, synonyms)[:max_synonyms]])
    if definition and definition.casefold() not in text.casefold():
        text = f"{text}: {definition}"
    return text[:max_chars]


def concept_texts(concepts: pa.Table, max_synonyms: int = MAX_SYNONYMS, max_chars: int = MAX_CHARS) -> list[str]:
    """One text per row of a `kg.tables` concepts table, in table order."""
    columns = concepts.select(["name", "synonyms", "definition"]).to_pydict()
    return [concept_text(n, s or [], d or "", max_synonyms, max_chars)
            for n, s, d in zip(columns["name"], columns["synonyms"], columns["definition"], strict=True)]


def concepts_in_order(concepts: pa.Table, ids: Sequence[str] | None = None) -> pa.Table:
    """The rows of `concepts` for `ids` in that order (default: sorted by id, the order in which
    `Triples.from_tables` numbers entities), so that feature row i belongs to entity i."""
    column = concepts["id"]
    rows = pc.index_in(pa.array(list(ids), pa.string()), value_set=column) if ids is not None else pc.sort_indices(column)
    if rows.null_count:
        raise ValueError("entities without a concept row: the concept table and the triples disagree")
    return concepts.take(rows)


def concept_features(source: GraphTables | pa.Table, encoder: TextEncoder, cache_dir: Path | str | None = None,
                     batch_size: int = 128, progress: bool = True) -> Tensor:
    """[num_concepts, encoder.dim] unit vectors, in the concepts table's order.

    With `cache_dir`, the vectors are read from (or written to) a safetensors file there named by a digest
    of the texts and the encoder, so the same graph and encoder are encoded once."""
    concepts = source.concepts if isinstance(source, GraphTables) else source
    texts = concept_texts(concepts)
    if cache_dir is None:
        return encoder.encode(texts, batch_size, progress)
    digest = hashlib.sha256("\0".join([encoder.fingerprint(), *texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"concept-features-{digest}.safetensors"
    if path.exists():
        return load_file(path)["features"]
    features = encoder.encode(texts, batch_size, progress)
    with atomic_open(path, "wb") as f:
        f.write(save({"features": features}, metadata={"concepts": str(len(texts)), "encoder": encoder.config.model}))
    return features
