"""Text pairs that teach an encoder the knowledge graph (KAD): (name, synonym), (name, definition) and
(`head name [SEP] relation`, tail name), each labelled by the concept its right side names, so that
pairs naming one concept are positives for each other.

A relation pair belongs to its tail: `pleural effusion [SEP] is a` and `pericardial effusion [SEP] is a`
both name `effusion`. Batches draw whole groups (several pairs of each drawn concept) so that soft
targets have something to act on, and concepts uniformly, so hubs do not crowd out the rest.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from kg.tables import GraphTables

from .features import distinct_synonyms

RELATION_TEXT = {"isa": "is a"}  # other RELA values read well with underscores as spaces
# What a concept is and where it is. Co-occurrence and modifiers link findings seen or described together,
# not alike: as pairs they pull every chest finding toward every other (pneumothorax and pleural effusion
# at cosine 0.88 after 100 steps on the chest findings with every relation type, 0.54 with none).
KNOWLEDGE_RELATIONS = ("IS_A", "LOCATED_AT")


@dataclass(frozen=True)
class KnowledgePairs:
    left: list[str]
    right: list[str]
    labels: Tensor  # [P] concept row (in the concepts table) that pair i names; a concept's pairs are contiguous
    starts: Tensor  # [C] first pair of each concept that has pairs
    counts: Tensor  # [C] its number of pairs
    descriptions: Tensor  # [C] how many of them, first, pair its name with a synonym or its definition

    def __len__(self) -> int:
        return len(self.left)

    def digest(self) -> str:
        """Identifies the training data, so that a run never resumes on other pairs."""
        digest = hashlib.sha256("\0".join(self.left + self.right).encode())
        digest.update(self.labels.numpy().tobytes())
        return digest.hexdigest()[:16]

    def sample(self, batch_size: int, per_concept: int, generator: torch.Generator) -> Tensor:
        """Indices of up to `batch_size` pairs: concepts in random order, up to `per_concept` pairs of each
        (`per_concept` <= `batch_size`), until the batch is full. A concept's pairs alternate between its
        descriptions and its relations (each kind in random order, the other kind filling in when one runs
        out): half a group says what the concept is called, half where it sits in the graph, and a hub's
        dozens of edges never crowd out its synonyms."""
        order = torch.randperm(len(self.starts), generator=generator)
        order = order[self.counts[order].clamp(max=per_concept).cumsum(0) <= batch_size]
        picks = []
        for c in order.tolist():
            described, count = int(self.descriptions[c]), int(self.counts[c])
            keys = torch.cat([torch.randperm(described, generator=generator) * 2,
                              torch.randperm(count - described, generator=generator) * 2 + 1])
            picks.append(self.starts[c] + keys.argsort()[:per_concept])
        return torch.cat(picks)


def relation_text(head: str, relation: str, sep_token: str) -> str:
    """`head [SEP] relation`, the relation (a RELA or a type) in words: `pleural effusion [SEP] is a`."""
    return f"{head} {sep_token} {RELATION_TEXT.get(relation, relation.replace('_', ' ').lower())}"


def knowledge_pairs(tables: GraphTables, sep_token: str, relations: Sequence[str] = KNOWLEDGE_RELATIONS,
                    max_per_concept: int = 32) -> KnowledgePairs:
    """The pairs of every concept that has any, at most `max_per_concept`: synonyms and definition first,
    then relations into it, by type in the order of `relations` (hierarchy first by default), best
    supported first within a type (`kg.relations.RELATION_TYPES` names them all)."""
    concepts = tables.concepts.select(["id", "name", "synonyms", "definition"]).to_pydict()
    row_of = {cid: i for i, cid in enumerate(concepts["id"])}
    names = concepts["name"]
    incoming: dict[int, list[tuple[int, str]]] = defaultdict(list)
    rank = pc.index_in(tables.relations["type"], value_set=pa.array(list(relations), pa.string()))
    edges = tables.relations.append_column("rank", rank).filter(pc.is_valid(rank))
    edges = edges.sort_by([("rank", "ascending"), ("support", "descending")]).select(["head", "tail", "type", "rela"]).to_pydict()
    for head, tail, rtype, rela in zip(edges["head"], edges["tail"], edges["type"], edges["rela"], strict=True):
        if head in row_of and tail in row_of:
            incoming[row_of[tail]].append((row_of[head], rela or rtype))
    left: list[str] = []
    right: list[str] = []
    labels: list[int] = []
    starts: list[int] = []
    descriptions: list[int] = []
    for row, (name, synonyms, definition) in enumerate(zip(names, concepts["synonyms"], concepts["definition"], strict=True)):
        own = [(name, s) for s in distinct_synonyms(name, synonyms or [])]
        own += [(name, definition)] if definition else []
        described = len(own)
        own += [(relation_text(names[head], relation, sep_token), name) for head, relation in incoming[row]]
        own = own[:max_per_concept]
        if own:
            starts.append(len(left))
            descriptions.append(min(described, len(own)))
            left += [a for a, _ in own]
            right += [b for _, b in own]
            labels += [row] * len(own)
    counts = torch.diff(torch.tensor([*starts, len(left)]))
    return KnowledgePairs(left, right, torch.tensor(labels), torch.tensor(starts), counts, torch.tensor(descriptions))
