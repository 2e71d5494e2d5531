"""The in-memory knowledge graph: a networkx MultiDiGraph with typed concepts and relations.

Every graph, from a UMLS release or from the open vocabularies, is read from RRF through
`kg.tables.read_tables`; `read_graph` builds the networkx graph that embeddings and exports
use from those tables, and database loads take the tables themselves.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import pyarrow as pa

from .problems import ProblemLog
from .relations import relation_names
from .semgroups import SemanticType
from .tables import CONCEPT_SCHEMA, RELATION_SCHEMA, GraphTables, read_tables

if TYPE_CHECKING:
    from torch_geometric.data import Data, HeteroData


@dataclass(slots=True)
class Concept:
    id: str
    name: str
    synonyms: list[str] = field(default_factory=list)
    semantic_types: list[str] = field(default_factory=list)  # TUIs
    group: str = ""  # semantic group abbreviation of the first semantic type
    definition: str = ""
    sources: list[str] = field(default_factory=list)  # "SAB:CODE"


@dataclass(slots=True)
class Relation:
    head: str
    type: str  # one of RELATION_TYPES
    tail: str
    rel: str = ""  # UMLS REL
    rela: str = ""  # UMLS RELA, the fine-grained relation
    source: str = ""  # SAB
    support: int = 0  # reports that support a mined relation; 0 when not counted


CONCEPT_FIELDS = tuple(f.name for f in fields(Concept))
RELATION_FIELDS = tuple(f.name for f in fields(Relation))


class KnowledgeGraph:
    def __init__(self, graph: nx.MultiDiGraph | None = None):
        self.graph = graph if graph is not None else nx.MultiDiGraph()

    def add_concept(self, concept: Concept) -> None:
        # Attributes are copied field by field: dataclasses.asdict deep-copies and is 10x slower.
        self.graph.add_node(concept.id, **{f: getattr(concept, f) for f in CONCEPT_FIELDS})

    def add_relation(self, r: Relation) -> None:
        # The key folds duplicates, e.g. a hierarchy stated once as PAR and once as CHD.
        self.graph.add_edge(r.head, r.tail, key=(r.type, r.rela, r.source), **{f: getattr(r, f) for f in RELATION_FIELDS})

    def concept(self, concept_id: str) -> Concept:
        return Concept(**self.graph.nodes[concept_id])

    def concepts(self) -> Iterator[Concept]:
        for _, attrs in self.graph.nodes(data=True):
            yield Concept(**attrs)

    def relations(self) -> Iterator[Relation]:
        for _, _, attrs in self.graph.edges(data=True):
            yield Relation(**attrs)

    def edge_columns(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[dict[str, Any], ...]]:
        """Heads, tails and attribute dicts of every edge, for column-wise exports.

        Reads networkx's adjacency dicts directly: the public edge view costs 2.5x as much per edge,
        which is most of a million-edge export."""
        rows = [(u, v, d) for u, nbrs in self.graph._adj.items() for v, keyed in nbrs.items() for d in keyed.values()]
        if not rows:
            return (), (), ()
        heads, tails, attrs = zip(*rows)
        return heads, tails, attrs

    @classmethod
    def from_tables(cls, tables: GraphTables) -> KnowledgeGraph:
        kg = cls()
        with paused_gc():
            for row in tables.concepts.to_pylist():
                kg.graph.add_node(row["id"], **row)
            for row in tables.relations.to_pylist():
                kg.graph.add_edge(row["head"], row["tail"], key=(row["type"], row["rela"], row["source"]), **row)
        return kg

    def to_tables(self) -> GraphTables:
        """Column tables for database loads; reads the attribute dicts column by column, in C."""
        with paused_gc():
            ids, attrs = zip(*self.graph.nodes(data=True)) if self.num_concepts else ((), ())
            # .get: a node that only appeared as a relation endpoint has no attributes (a null name).
            concepts = [pa.array(ids, pa.string())] + [pa.array([a.get(f.name) for a in attrs], f.type) for f in CONCEPT_SCHEMA if f.name != "id"]
            heads, tails, edge_attrs = self.edge_columns()
            relations = [pa.array(heads, pa.string()), pa.array(tails, pa.string())] + [
                pa.array(list(map(itemgetter(f.name), edge_attrs)), f.type) for f in RELATION_SCHEMA if f.name not in ("head", "tail")
            ]
        return GraphTables(pa.Table.from_arrays(concepts, schema=CONCEPT_SCHEMA), pa.Table.from_arrays(relations, schema=RELATION_SCHEMA))

    def __contains__(self, concept_id: str) -> bool:
        return concept_id in self.graph

    @property
    def num_concepts(self) -> int:
        return self.graph.number_of_nodes()

    @property
    def num_relations(self) -> int:
        return self.graph.number_of_edges()

    def id_map(self) -> dict[str, int]:
        """Concept id -> row index, in a stable (sorted) order shared by all tensor exports."""
        return {cid: i for i, cid in enumerate(sorted(self.graph.nodes))}

    def edge_index(self) -> tuple[list[int], list[int], list[int], dict[str, int]]:
        """Heads, tails and relation ids of all edges, and the relation-name -> id map (names: `relation_names`)."""
        ids = self.id_map()
        heads, tails, attrs = self.edge_columns()
        names = relation_names(pa.array([a["rela"] for a in attrs], pa.string()), pa.array([a["type"] for a in attrs], pa.string()))
        names = names.to_pylist()
        rel_ids = {name: i for i, name in enumerate(sorted(set(names)))}
        return [ids[h] for h in heads], [ids[t] for t in tails], [rel_ids[n] for n in names], rel_ids

    def to_pyg(self) -> tuple[Data, dict[str, int], dict[str, int]]:
        """Homogeneous `Data(edge_index, edge_type, num_nodes)` with the concept and relation id maps."""
        import torch
        from torch_geometric.data import Data

        heads, tails, rels, rel_ids = self.edge_index()
        data = Data(
            edge_index=torch.tensor([heads, tails], dtype=torch.long),
            edge_type=torch.tensor(rels, dtype=torch.long),
            num_nodes=self.num_concepts,
        )
        return data, self.id_map(), rel_ids

    def to_hetero_pyg(self) -> tuple[HeteroData, dict[str, dict[str, int]]]:
        """`HeteroData` with one node type per semantic group and one edge type per relation type."""
        import torch
        from torch_geometric.data import HeteroData

        by_group: dict[str, dict[str, int]] = {}
        for cid in sorted(self.graph.nodes):
            group = self.graph.nodes[cid]["group"] or "UNKNOWN"
            index = by_group.setdefault(group, {})
            index[cid] = len(index)
        group_of = {cid: g for g, index in by_group.items() for cid in index}
        edges: dict[tuple[str, str, str], list[list[int]]] = {}
        for h, t, attrs in self.graph.edges(data=True):
            key = (group_of[h], attrs["type"], group_of[t])
            pair = edges.setdefault(key, [[], []])
            pair[0].append(by_group[group_of[h]][h])
            pair[1].append(by_group[group_of[t]][t])
        data = HeteroData()
        for group, index in by_group.items():
            data[group].num_nodes = len(index)
        for key, (src, dst) in edges.items():
            data[key].edge_index = torch.tensor([src, dst], dtype=torch.long)
        return data, by_group


@contextmanager
def paused_gc() -> Iterator[None]:
    """Building millions of small objects triggers the cycle collector over and over (2-5x slower); none are cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_graph(
    rrf_dir: Path, problems: ProblemLog, semantic_types: dict[str, SemanticType] | None = None
) -> KnowledgeGraph:
    """The RRF tables of `rrf_dir` (and medkg's support attributes in MRSAT, if present) as a graph."""
    return KnowledgeGraph.from_tables(read_tables(rrf_dir, problems, semantic_types))
