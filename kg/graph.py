"""The in-memory knowledge graph: a networkx MultiDiGraph with typed concepts and relations.

Every graph, from a UMLS release or from the open vocabularies, is read from RRF by
`read_graph`, so downstream code (database loads, embeddings, entity linking) has one input.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from .problems import MalformedInputError, ProblemLog
from .relations import edge_from_rrf
from .rrf import MRCONSO, MRDEF, MRREL, MRSAT, MRSTY, REQUIRED, SUPPORT_ATTRIBUTE, read_table, table_path
from .semgroups import SemanticType

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
        """Heads, tails and relation ids of all edges, and the relation-name -> id map."""
        ids = self.id_map()
        rel_names = sorted({self._relation_name(a) for _, _, a in self.graph.edges(data=True)})
        rel_ids = {name: i for i, name in enumerate(rel_names)}
        heads, tails, rels = [], [], []
        for h, t, attrs in self.graph.edges(data=True):
            heads.append(ids[h])
            tails.append(ids[t])
            rels.append(rel_ids[self._relation_name(attrs)])
        return heads, tails, rels, rel_ids

    @staticmethod
    def _relation_name(attrs: dict[str, Any]) -> str:
        """Fine-grained name for embeddings: the RELA where one is given, else the type."""
        return attrs["rela"] or attrs["type"].lower()

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
    """Read the four RRF tables (and medkg's support attributes in MRSAT, if present)."""
    rrf_dir = Path(rrf_dir)
    missing = [str(table_path(rrf_dir, t)) for t in REQUIRED if not table_path(rrf_dir, t).exists()]
    if missing:
        raise FileNotFoundError(f"not an RRF directory, missing: {', '.join(missing)}")
    semantic_types = semantic_types or {}
    names: dict[str, list[str]] = {}  # CUI -> [preferred, other strings...]
    preferred: set[str] = set()
    sources: dict[str, list[str]] = {}
    for _, row in read_table(table_path(rrf_dir, "MRCONSO"), MRCONSO, problems):
        strings = names.setdefault(row.CUI, [])
        if row.TS == "P" and row.STT == "PF" and row.ISPREF == "Y" and row.CUI not in preferred:
            preferred.add(row.CUI)
            strings.insert(0, row.STR)
        elif row.STR not in strings:
            strings.append(row.STR)
        code = f"{row.SAB}:{row.CODE}"
        if code not in sources.setdefault(row.CUI, []):
            sources[row.CUI].append(code)
    if not names:
        raise MalformedInputError(f"{table_path(rrf_dir, 'MRCONSO')}: no concepts could be read")
    tuis: dict[str, list[str]] = {}
    for _, row in read_table(table_path(rrf_dir, "MRSTY"), MRSTY, problems):
        tuis.setdefault(row.CUI, []).append(row.TUI)
    definitions: dict[str, str] = {}
    for _, row in read_table(table_path(rrf_dir, "MRDEF"), MRDEF, problems):
        definitions.setdefault(row.CUI, row.DEF)

    kg = KnowledgeGraph()
    for cui, strings in names.items():
        name, *synonyms = strings
        types = tuis.get(cui, [])
        group = semantic_types[types[0]].group if types and types[0] in semantic_types else ""
        kg.add_concept(Concept(cui, name, [s for s in synonyms if s != name], types, group, definitions.get(cui, ""), sources[cui]))

    support = _read_support(rrf_dir, problems)
    mrrel = table_path(rrf_dir, "MRREL")
    for number, row in read_table(mrrel, MRREL, problems):
        head, rtype, tail, rela = edge_from_rrf(row.CUI1, row.REL, row.CUI2, row.RELA)
        absent = [c for c in (head, tail) if c not in names]
        if absent:
            problems.report(mrrel, number, "dangling relation", f"{row.REL}/{row.RELA or '-'} names unknown concept {', '.join(absent)}")
            continue
        kg.add_relation(Relation(head, rtype, tail, row.REL, rela, row.SAB, support.get(row.RUI, 0)))
    return kg


def _read_support(rrf_dir: Path, problems: ProblemLog) -> dict[str, int]:
    path = table_path(rrf_dir, "MRSAT")
    if not path.exists():
        return {}
    support: dict[str, int] = {}
    for number, row in read_table(path, MRSAT, problems, prefilter=f"|{SUPPORT_ATTRIBUTE}|".encode()):
        if row.STYPE != "RUI" or row.ATN != SUPPORT_ATTRIBUTE:
            continue
        try:
            support[row.METAUI] = int(row.ATV)
        except ValueError:
            problems.report(path, number, "bad value", f"SUPPORT of {row.METAUI} is {row.ATV!r}, not a count")
    return support
