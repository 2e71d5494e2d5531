"""One store interface over the graph databases; backends supply only what their dialects differ in."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import pyarrow as pa
from tqdm import tqdm

from kg.graph import KnowledgeGraph
from kg.lookup import Hit, NameIndex

from .readonly import ReadOnlyError, refuse_writes
from .schema import CONCEPT, CONCEPT_PROPERTIES, MENTIONS, REPORT, RELATIONSHIP_PROPERTIES, RELATIONSHIP_TYPES, check_relationship_types

LINK_BATCH = 10_000
# Both dialects accept these; a mention is one relationship per (report, concept, assertion, section).
# Values are bound with WITH before MERGE and endpoints matched in separate clauses: LadybugDB
# plans `MERGE (r {id: row.report})` and comma-joined MATCH patterns 20-1000x slower.
MERGE_REPORTS = f"UNWIND $rows AS row WITH row.report AS id, row.source AS source MERGE (r:{REPORT} {{id: id}}) SET r.source = source"
MERGE_MENTIONS = (
    "UNWIND $rows AS row WITH row.report AS report, row.concept AS concept, row.assertion AS assertion, "
    "row.section AS section, row.count AS count "
    f"MATCH (r:{REPORT} {{id: report}}) MATCH (c:{CONCEPT} {{id: concept}}) "
    f"MERGE (r)-[m:{MENTIONS} {{assertion: assertion, section: section}}]->(c) SET m.count = count"
)

_CUI_OR_CODE = re.compile(r"^(C\d{7}|[A-Z][A-Z0-9_]*:\S+)$")


@dataclass
class TableLoad:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class LoadSummary:
    tables: dict[str, TableLoad] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (record, reason)

    def __str__(self) -> str:
        lines = [f"{'table':<16}{'added':>10}{'updated':>10}{'unchanged':>11}"]
        lines += [f"{name:<16}{t.added:>10,}{t.updated:>10,}{t.unchanged:>11,}" for name, t in self.tables.items()]
        if self.rejected:
            reasons = Counter(reason for _, reason in self.rejected)
            lines.append(f"rejected {len(self.rejected):,}: " + ", ".join(f"{n:,} {r}" for r, n in reasons.most_common()))
            lines += [f"  {record}: {reason}" for record, reason in self.rejected[:10]]
        else:
            lines.append("rejected 0")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Neighbor:
    id: str
    name: str
    group: str
    distance: int
    relation: str
    rela: str
    direction: str  # "out": via -[relation]-> neighbor; "in": neighbor -[relation]-> via
    via: str


@dataclass(frozen=True, slots=True)
class PathStep:
    id: str
    name: str
    relation: str | None  # relation to the next step, None at the end
    direction: str | None


_ARROW_TYPES = {"STRING": pa.string(), "STRING[]": pa.list_(pa.string()), "INT64": pa.int64()}
CONCEPT_SCHEMA = pa.schema([(p, _ARROW_TYPES[t]) for p, t in CONCEPT_PROPERTIES.items()])
RELATIONSHIP_SCHEMA = pa.schema([("from", pa.string()), ("to", pa.string())] + [(p, _ARROW_TYPES[t]) for p, t in RELATIONSHIP_PROPERTIES.items()])


_concept_values = itemgetter(*CONCEPT_PROPERTIES)
_relationship_values = itemgetter(*RELATIONSHIP_PROPERTIES)


def _columns(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return pa.table([pa.array(c, f.type) for c, f in zip(columns, schema)], schema=schema)


def concept_table(kg: KnowledgeGraph, rejected: list[tuple[str, str]]) -> pa.Table:
    """Concepts as one Arrow table; reads networkx's attribute dicts directly, as this runs per row."""
    rows = []
    for cid, attrs in kg.graph.nodes(data=True):
        if not cid.strip() or not attrs["name"].strip():
            rejected.append((f"concept {cid!r}", "empty id or name"))
            continue
        rows.append(_concept_values(attrs))
    return _columns(rows, CONCEPT_SCHEMA)


def relationship_tables(kg: KnowledgeGraph, rejected: list[tuple[str, str]], valid_ids: set[str]) -> dict[str, pa.Table]:
    """One Arrow table per relationship type (`from`, `to`, properties), as COPY takes them."""
    rows: dict[str, list[tuple]] = {t: [] for t in RELATIONSHIP_TYPES}
    for head, tail, a in kg.graph.edges(data=True):
        rtype = a["type"]
        if rtype not in rows:
            rejected.append((f"{head} -[{rtype}]-> {tail}", "unknown relationship type"))
        elif head not in valid_ids or tail not in valid_ids:
            rejected.append((f"{head} -[{rtype}]-> {tail}", "endpoint concept rejected"))
        elif a["support"] < 0:
            rejected.append((f"{head} -[{rtype}]-> {tail}", "negative support"))
        else:
            rows[rtype].append((head, tail, *_relationship_values(a)))
    return {t: _columns(r, RELATIONSHIP_SCHEMA) for t, r in rows.items()}


class GraphStore(ABC):
    """A graph database holding medkg's schema. Opened read-only unless asked to write."""

    uri: str
    read_only: bool

    # ---- what backends implement -------------------------------------------------------
    @abstractmethod
    def _run(self, cypher: str, params: dict[str, Any] | None = None, write: bool = False) -> list[dict[str, Any]]:
        """Execute one statement; rows as dicts of plain Python values."""

    @abstractmethod
    def ensure_schema(self) -> None: ...

    @abstractmethod
    def _load_concepts(self, table: pa.Table, bar: tqdm) -> TableLoad: ...

    @abstractmethod
    def _load_relationships(self, rel_type: str, table: pa.Table, bar: tqdm) -> TableLoad: ...

    @abstractmethod
    def _shortest_path(self, a: str, b: str, max_depth: int) -> list[PathStep]: ...

    @abstractmethod
    def close(self) -> None: ...

    type_function = "type"  # Cypher function naming a relationship's type

    # ---- shared behaviour --------------------------------------------------------------
    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def query(self, cypher: str, params: dict[str, Any] | None = None, write: bool = False) -> list[dict[str, Any]]:
        """Run user Cypher. Refused unless `write` when it writes; values always go in `params`."""
        if not write:
            refuse_writes(cypher)
        elif self.read_only:
            raise ReadOnlyError(f"{self.uri} is opened read-only; open it for writing to run this query")
        return self._run(cypher, params, write=write)

    def load(self, kg: KnowledgeGraph, progress: bool = True) -> LoadSummary:
        """Merge a graph into the store: loading the same graph twice changes nothing."""
        if self.read_only:
            raise ReadOnlyError(f"{self.uri} is opened read-only; cannot load")
        self.ensure_schema()
        summary = LoadSummary()
        concepts = concept_table(kg, summary.rejected)
        relationships = relationship_tables(kg, summary.rejected, set(concepts.column("id").to_pylist()))
        total = concepts.num_rows + sum(t.num_rows for t in relationships.values())
        with tqdm(total=total, desc="loading graph", unit=" rows", unit_scale=True, disable=not progress) as bar:
            summary.tables["Concept"] = self._load_concepts(concepts, bar)
            for rel_type, table in relationships.items():
                if table.num_rows:
                    summary.tables[rel_type] = self._load_relationships(rel_type, table, bar)
        return summary

    def link_mentions(self, rows: list[dict[str, Any]]) -> int:
        """Merge `(:Report)-[:MENTIONS {assertion, section, count}]->(:Concept)`; rows name report, source,
        concept, assertion, section and count. Linking the same reports twice changes nothing."""
        if self.read_only:
            raise ReadOnlyError(f"{self.uri} is opened read-only; cannot link reports")
        self.ensure_schema()
        for start in range(0, len(rows), LINK_BATCH):
            batch = rows[start : start + LINK_BATCH]
            self._run(MERGE_REPORTS, {"rows": batch}, write=True)
            self._run(MERGE_MENTIONS, {"rows": batch}, write=True)
        return len(rows)

    def counts(self) -> dict[str, int]:
        counts = {"Concept": self._run("MATCH (c:Concept) RETURN count(c) AS n")[0]["n"]}
        for rel_type in RELATIONSHIP_TYPES:
            counts[rel_type] = self._run(f"MATCH (:Concept)-[r:{rel_type}]->(:Concept) RETURN count(r) AS n")[0]["n"]
        return counts

    def concept(self, concept_id: str) -> dict[str, Any] | None:
        rows = self._run("MATCH (c:Concept {id: $id}) RETURN c", {"id": concept_id})
        return rows[0]["c"] if rows else None

    def require_concept(self, concept_id: str) -> dict[str, Any]:
        concept = self.concept(concept_id)
        if concept is None:
            raise KeyError(f"no concept with id {concept_id!r} in {self.uri}; find ids with `medkg kg lookup`")
        return concept

    def name_index(self) -> NameIndex:
        rows = self._run("MATCH (c:Concept) RETURN c.id AS id, c.name AS name, c.synonyms AS synonyms, size(c.sources) AS weight")
        return NameIndex((r["id"], r["name"], r["synonyms"], r["weight"] or 0) for r in rows)

    def lookup(self, text: str, limit: int = 10) -> list[Hit]:
        """Concepts by name, synonym or id; the text is only ever data, never Cypher."""
        hits: list[Hit] = []
        if _CUI_OR_CODE.match(text.strip()):
            concept = self.concept(text.strip())
            if concept is not None:
                hits.append(Hit(concept["id"], concept["name"], 100.0, concept["id"]))
        hits += [h for h in self.name_index().search(text, limit) if not hits or h.id != hits[0].id]
        return hits[:limit]

    def neighbors(self, concept_id: str, depth: int = 1, rel_types: list[str] | None = None, limit: int = 500) -> list[Neighbor]:
        """Concepts within `depth` hops, each at its shortest distance, breadth first."""
        self.require_concept(concept_id)
        pattern = "|".join(check_relationship_types(rel_types))
        seen = {concept_id}
        frontier = [concept_id]
        found: list[Neighbor] = []
        for distance in range(1, depth + 1):
            next_frontier: list[str] = []
            for direction, arrow in (("out", f"-[r:{pattern}]->"), ("in", f"<-[r:{pattern}]-")):
                rows = self._run(
                    f"MATCH (c:Concept){arrow}(n:Concept) WHERE c.id IN $ids "
                    f"RETURN c.id AS via, {self.type_function}(r) AS relation, r.rela AS rela, n.id AS id, n.name AS name, n.`group` AS grp "
                    f"ORDER BY id",
                    {"ids": frontier},
                )
                for row in rows:
                    if row["id"] in seen:
                        continue
                    seen.add(row["id"])
                    next_frontier.append(row["id"])
                    found.append(Neighbor(row["id"], row["name"], row["grp"] or "", distance, row["relation"], row["rela"] or "", direction, row["via"]))
                    if len(found) >= limit:
                        return found
            frontier = next_frontier
            if not frontier:
                break
        return found

    def path(self, a: str, b: str, max_depth: int = 6) -> list[PathStep]:
        """A shortest path between two concepts, ignoring direction; empty when none is that short."""
        self.require_concept(a)
        self.require_concept(b)
        if a == b:
            concept = self.require_concept(a)
            return [PathStep(a, concept["name"], None, None)]
        return self._shortest_path(a, b, max_depth)

    def iter_concepts(self) -> Iterator[dict[str, Any]]:
        yield from self._run("MATCH (c:Concept) RETURN c ORDER BY c.id")
