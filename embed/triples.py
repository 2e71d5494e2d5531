"""Link-prediction triples: (head, relation, tail) index tensors built from a `KnowledgeGraph` or
from arrays, a seeded split that keeps every valid/test entity and relation in training, and the
index of known triples that filtered ranking removes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from kg import relations as kg_relations

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph
    from kg.tables import GraphTables


@dataclass(frozen=True)
class Triples:
    """Triples over a fixed vocabulary: ids index `entity_names` / `relation_names` (which may be empty)."""

    heads: Tensor
    relations: Tensor
    tails: Tensor
    num_entities: int
    num_relations: int
    entity_names: list[str] = field(default_factory=list, repr=False)
    relation_names: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        n = self.heads.numel()
        if self.relations.numel() != n or self.tails.numel() != n:
            raise ValueError("heads, relations and tails must have the same length")
        for ids, size, what in ((self.heads, self.num_entities, "head"), (self.tails, self.num_entities, "tail"),
                                (self.relations, self.num_relations, "relation")):
            if ids.dtype != torch.long:
                raise TypeError(f"{what} ids must be int64, not {ids.dtype}")
            if n and (int(ids.min()) < 0 or int(ids.max()) >= size):
                raise ValueError(f"{what} id out of range [0, {size})")

    @classmethod
    def from_arrays(
        cls,
        heads: Sequence[int] | Tensor,
        relations: Sequence[int] | Tensor,
        tails: Sequence[int] | Tensor,
        num_entities: int | None = None,
        num_relations: int | None = None,
        entity_names: Sequence[str] = (),
        relation_names: Sequence[str] = (),
    ) -> Triples:
        """Triples from id arrays, duplicates removed (a repeated triple would count twice in training and ranking).

        Vocabulary sizes default to the names given, else to the largest id + 1."""
        rows = torch.stack([torch.as_tensor(x, dtype=torch.long).reshape(-1) for x in (heads, relations, tails)], dim=1)
        rows = torch.unique(rows, dim=0) if len(rows) else rows
        if num_entities is None:
            num_entities = len(entity_names) or (int(rows[:, [0, 2]].max()) + 1 if len(rows) else 0)
        if num_relations is None:
            num_relations = len(relation_names) or (int(rows[:, 1].max()) + 1 if len(rows) else 0)
        return cls(rows[:, 0].contiguous(), rows[:, 1].contiguous(), rows[:, 2].contiguous(),
                   num_entities, num_relations, list(entity_names), list(relation_names))

    @classmethod
    def from_graph(cls, kg: KnowledgeGraph) -> Triples:
        """Every edge of the graph, with relations named by `KnowledgeGraph.to_pyg` (the RELA, else the type)."""
        data, concept_ids, relation_ids = kg.to_pyg()
        entity_names = sorted(concept_ids, key=concept_ids.__getitem__)
        relation_names = sorted(relation_ids, key=relation_ids.__getitem__)
        return cls.from_arrays(data.edge_index[0], data.edge_type, data.edge_index[1],
                               entity_names=entity_names, relation_names=relation_names)

    @classmethod
    def from_tables(cls, tables: GraphTables) -> Triples:
        """Every relation of Arrow graph tables (from RRF or a graph database), entities in sorted id order
        and relations named as `from_graph` names them; computed in Arrow, so a UMLS-sized graph never
        becomes Python objects."""
        heads, relations, tails, entity_names, relation_names = table_rows(tables)
        return cls.from_arrays(heads, relations, tails, entity_names=entity_names, relation_names=relation_names)

    def __len__(self) -> int:
        return self.heads.numel()

    def select(self, index: Tensor) -> Triples:
        """The triples at `index`, over the same vocabulary."""
        return Triples(self.heads[index], self.relations[index], self.tails[index], self.num_entities,
                       self.num_relations, self.entity_names, self.relation_names)

    def stacked(self) -> Tensor:
        """A [n, 3] tensor of (head, relation, tail) rows."""
        return torch.stack([self.heads, self.relations, self.tails], dim=1)


class KnownTriples:
    """Every true triple, sorted by (head, relation) and by (relation, tail), so that filtered ranking can
    look up all true tails of a batch of (h, r, ?) queries, and all true heads of (?, r, t), without a Python loop."""

    def __init__(self, *parts: Triples):
        if not parts:
            raise ValueError("KnownTriples needs at least one set of triples")
        self.num_entities = parts[0].num_entities
        self.num_relations = parts[0].num_relations
        h = torch.cat([p.heads for p in parts])
        r = torch.cat([p.relations for p in parts])
        t = torch.cat([p.tails for p in parts])
        self._by_head = self._index(h * self.num_relations + r, t)
        self._by_tail = self._index(t * self.num_relations + r, h)

    def __len__(self) -> int:
        return self._by_head[0].numel()

    def _index(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        pairs = torch.unique(keys * self.num_entities + values)  # sorted, duplicates dropped
        return pairs // self.num_entities, pairs % self.num_entities

    def tails(self, heads: Tensor, relations: Tensor) -> tuple[Tensor, Tensor]:
        """(query row, entity) pairs: every known tail of each (heads[i], relations[i], ?) query."""
        return self._lookup(self._by_head, heads * self.num_relations + relations)

    def heads(self, relations: Tensor, tails: Tensor) -> tuple[Tensor, Tensor]:
        """(query row, entity) pairs: every known head of each (?, relations[i], tails[i]) query."""
        return self._lookup(self._by_tail, tails * self.num_relations + relations)

    @staticmethod
    def _lookup(index: tuple[Tensor, Tensor], queries: Tensor) -> tuple[Tensor, Tensor]:
        keys, values = index
        keys, values = keys.to(queries.device), values.to(queries.device)
        start = torch.searchsorted(keys, queries)
        counts = torch.searchsorted(keys, queries, right=True) - start
        rows = torch.repeat_interleave(torch.arange(queries.numel(), device=queries.device), counts)
        first = torch.repeat_interleave(start - (torch.cumsum(counts, 0) - counts), counts)
        return rows, values[first + torch.arange(rows.numel(), device=queries.device)]


@dataclass(frozen=True)
class Split:
    """Train / valid / test triples over one vocabulary; `known` filters all three when ranking."""

    train: Triples
    valid: Triples
    test: Triples

    @cached_property
    def known(self) -> KnownTriples:
        return KnownTriples(self.train, self.valid, self.test)


def table_rows(tables: GraphTables) -> tuple[Tensor, Tensor, Tensor, list[str], list[str]]:
    """(heads, relations, tails) ids of each row of `tables.relations` (duplicates kept), with the entity and
    relation names that `Triples.from_tables` gives them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pc.unique(tables.concepts["id"]).sort()
    rel = tables.relations
    names = kg_relations.relation_names(rel["rela"], rel["type"])
    relation_names = pc.unique(names).sort()
    heads, tails = pc.index_in(rel["head"], value_set=ids), pc.index_in(rel["tail"], value_set=ids)
    if heads.null_count or tails.null_count:
        raise ValueError("relations name concepts that the concept table lacks; read graphs with kg.tables.read_tables")

    def tensor(values: pa.ChunkedArray | pa.Array) -> Tensor:
        return torch.from_numpy(values.to_numpy().astype("int64", copy=False))

    return (tensor(heads), tensor(pc.index_in(names, value_set=relation_names)), tensor(tails), ids.to_pylist(),
            relation_names.to_pylist())


def held_out_rows(tables: GraphTables, valid: float, test: float, seed: int) -> Tensor:
    """[relations rows] bool: the rows of `tables.relations` whose triple `split_triples(Triples.from_tables(tables),
    valid, test, seed)` puts in valid or test, i.e. what `medkg embed train` with that split ranks a model on.
    Anything trained for that model (the knowledge encoder's pairs) must leave them out, or its figures
    measure memory of the test edges."""
    heads, relations, tails, entity_names, relation_names = table_rows(tables)
    triples = Triples.from_arrays(heads, relations, tails, entity_names=entity_names, relation_names=relation_names)
    split = split_triples(triples, valid, test, seed)

    def key(rows: Tensor) -> Tensor:
        return (rows[:, 0] * triples.num_relations + rows[:, 1]) * triples.num_entities + rows[:, 2]

    held = torch.cat([split.valid.stacked(), split.test.stacked()])
    return torch.isin(key(torch.stack([heads, relations, tails], dim=1)), key(held))


def split_triples(triples: Triples, valid: float = 0.1, test: float = 0.1, seed: int = 0) -> Split:
    """A seeded random split in which every entity and relation of valid and test also occurs in train.

    The standard practice (PyKEEN's default "coverage" split does the same): the embedding of an entity
    never seen in training is untrained, so ranking it measures nothing. After a seeded shuffle, the
    first triple of each entity and of each relation is kept for training; valid and test are then drawn,
    in shuffled order, from the remaining triples. They come out smaller than asked when most triples are
    needed for coverage (a star whose leaves have one edge each); both then shrink in proportion."""
    if valid < 0 or test < 0 or valid + test >= 1:
        raise ValueError("valid and test fractions must be >= 0 and sum to < 1")
    n = len(triples)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    h, r, t = triples.heads[order], triples.relations[order], triples.tails[order]
    position = torch.arange(n)
    first_entity = torch.full((triples.num_entities,), n, dtype=torch.long)
    first_entity.scatter_reduce_(0, h, position, "amin").scatter_reduce_(0, t, position, "amin")
    first_relation = torch.full((triples.num_relations,), n, dtype=torch.long)
    first_relation.scatter_reduce_(0, r, position, "amin")
    covering = torch.zeros(n + 1, dtype=torch.bool)  # slot n absorbs unused vocabulary entries
    covering[first_entity] = True
    covering[first_relation] = True
    free = torch.nonzero(~covering[:n]).flatten()
    n_valid, n_test = round(valid * n), round(test * n)
    if n_valid + n_test > free.numel():
        scale = free.numel() / (n_valid + n_test)
        n_valid, n_test = int(n_valid * scale), int(n_test * scale)
    in_valid, in_test = free[:n_valid], free[n_valid:n_valid + n_test]
    in_train = torch.ones(n, dtype=torch.bool)
    in_train[in_valid] = False
    in_train[in_test] = False

    def part(positions: Tensor) -> Triples:
        return triples.select(order[positions].sort().values)  # back in source order

    return Split(part(torch.nonzero(in_train).flatten()), part(in_valid), part(in_test))
