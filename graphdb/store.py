"""One store interface over the graph databases; backends supply only what their dialects differ in."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kg.errors import InputError, MedkgError, MissingInputError
from kg.graph import KnowledgeGraph
from kg.lookup import Hit, NameIndex
from kg.tables import CONCEPT_SCHEMA, RELATION_SCHEMA, GraphTables

from .readonly import ReadOnlyError, refuse_file_access, refuse_writes
from .schema import (
    CONCEPT_PROPERTIES,
    LOAD_RECORD,
    LOAD_RECORD_ID,
    MENTION_PROPERTIES,
    RELATIONSHIP_PROPERTIES,
    RELATIONSHIP_TYPES,
    REPORT_PROPERTIES,
    check_relationship_types,
)


class GraphDBError(MedkgError, RuntimeError):
    """What the database said, without a traceback: a syntax error, a lock, a lost connection."""


class CredentialsError(MedkgError, PermissionError):
    """The database needs credentials that were not given."""


class ConceptNotFoundError(MedkgError, LookupError):
    """No concept has the id asked for."""


class GraphNotFoundError(MissingInputError):
    """No graph database where one was to be read."""


class IncompleteGraphError(GraphDBError):
    """The graph's last load has not finished: it was interrupted, or it is still running."""


class NoEmbeddingsError(GraphDBError):
    """The graph holds no concept vectors to rank by."""


# Paths longer than this are refused: LadybugDB's recursive matches stop at 30 hops, and on a
# graph of radiology concepts any two connected concepts are far closer than that.
MAX_PATH_DEPTH = 30
Progress = Callable[[int, int], None]  # (rows written so far, rows to write): how loads report progress


_CUI_OR_CODE = re.compile(r"^(C\d{7}|[A-Z][A-Z0-9_]*:\S+)$", re.IGNORECASE)


@dataclass
class TableLoad:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    seconds: float = 0.0  # diffing and writing this table

    @property
    def rows(self) -> int:
        return self.added + self.updated + self.unchanged


@dataclass
class LoadSummary:
    tables: dict[str, TableLoad] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (record, reason)
    prepare_seconds: float = 0.0  # turning the graph into column tables, before any table is written

    @property
    def relationship_seconds(self) -> float:
        return sum(t.seconds for name, t in self.tables.items() if name != "Concept")

    def __str__(self) -> str:
        lines = [f"{'table':<16}{'added':>10}{'updated':>10}{'unchanged':>11}{'seconds':>9}"]
        lines += [f"{name:<16}{t.added:>10,}{t.updated:>10,}{t.unchanged:>11,}{t.seconds:>9.2f}" for name, t in self.tables.items()]
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
class Similar:
    id: str
    name: str
    group: str
    similarity: float  # cosine of the two concepts' stored embeddings


@dataclass(frozen=True, slots=True)
class PathStep:
    id: str
    name: str
    relation: str | None  # relation to the next step, None at the end
    direction: str | None


REPORT_SCHEMA = pa.schema(list(REPORT_PROPERTIES.items()))
MENTION_SCHEMA = pa.schema([("from", pa.string()), ("to", pa.string()), *MENTION_PROPERTIES.items()])
EMBEDDING_SCHEMA = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32()))])


def _reject(table: pa.Table, mask: pa.ChunkedArray, describe: Callable[[dict[str, Any]], str], reason: str,
            rejected: list[tuple[str, str]]) -> pa.Table:
    """Drop rows where `mask` holds, recording each with a reason; bad rows are rare, so they go row by row."""
    mask = pc.fill_null(mask, True)
    rejected += [(describe(row), reason) for row in table.filter(mask).to_pylist()]
    return table.filter(pc.invert(mask))


def _blank(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.equal(pc.utf8_trim_whitespace(column), "")


def _describe_concept(row: dict[str, Any]) -> str:
    return f"concept {row['id']!r}"


def _describe_relationship(row: dict[str, Any]) -> str:
    return f"{row['head']} -[{row['type']}]-> {row['tail']}"


def validated_tables(tables: GraphTables, rejected: list[tuple[str, str]]) -> tuple[pa.Table, dict[str, pa.Table]]:
    """Concepts, and one table per relationship type, with every record the schema cannot hold rejected."""
    concepts = _reject(tables.concepts, pc.is_null(tables.concepts["name"]), _describe_concept,
                       "relation endpoint without a concept record", rejected)
    concepts = _reject(concepts, pc.or_(_blank(concepts["id"]), _blank(concepts["name"])), _describe_concept, "empty id or name", rejected)
    relations = _reject(tables.relations, pc.invert(pc.is_in(tables.relations["type"], value_set=pa.array(RELATIONSHIP_TYPES))),
                        _describe_relationship, "unknown relationship type", rejected)
    if concepts.num_rows < tables.concepts.num_rows:  # endpoints are concepts of the graph, so only rejected ones can be missing
        ids = concepts["id"].combine_chunks()
        known = pc.and_(pc.is_in(relations["head"], value_set=ids), pc.is_in(relations["tail"], value_set=ids))
        relations = _reject(relations, pc.invert(known), _describe_relationship, "endpoint concept rejected", rejected)
    relations = _reject(relations, pc.less(relations["support"], 0), _describe_relationship, "negative support", rejected)
    by_type = {t: relations.filter(pc.equal(relations["type"], t)).select(["head", "tail", *RELATIONSHIP_PROPERTIES])
                          .rename_columns({"head": "from", "tail": "to"})
               for t in RELATIONSHIP_TYPES}
    return concepts.select(list(CONCEPT_PROPERTIES)), by_type


def path_steps(nodes: list[dict[str, Any]], starts: list[str], types: list[str]) -> list[PathStep]:
    """The steps of a path from its nodes (`id`, `name`) and, for each relationship between node i and
    i+1, the id of its start node and its type: one rule for the direction in every backend."""
    return [PathStep(node["id"], node["name"], types[i], "out" if starts[i] == node["id"] else "in") if i < len(types)
            else PathStep(node["id"], node["name"], None, None) for i, node in enumerate(nodes)]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _timed(load: Callable[..., TableLoad], *args: Any) -> TableLoad:
    started = time.perf_counter()
    result = load(*args)
    result.seconds = time.perf_counter() - started
    return result


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
    def _load_concepts(self, table: pa.Table, advance: Callable[[int], None]) -> TableLoad:
        """Merge concept nodes; `advance(rows)` after each batch written."""

    @abstractmethod
    def _load_relationships(self, rel_type: str, table: pa.Table, advance: Callable[[int], None]) -> TableLoad:
        """Merge relationships of one type (columns `from`, `to` and the properties); `advance(rows)` after each batch."""

    @abstractmethod
    def _link(self, reports: pa.Table, mentions: pa.Table) -> dict[str, TableLoad]:
        """Merge report nodes (`id`, `source`) and mentions (`from`, `to`, assertion, section, count)."""

    @abstractmethod
    def _shortest_path(self, a: str, b: str, max_depth: int) -> list[PathStep]: ...

    @abstractmethod
    def _store_embeddings(self, table: pa.Table) -> None:
        """Replace the stored concept vectors by `table` (EMBEDDING_SCHEMA; every id is a stored concept)."""

    embeddings_query: str  # Cypher returning `id` and `vector` of every concept with a stored embedding

    @abstractmethod
    def close(self) -> None: ...

    type_function = "type"  # Cypher function naming a relationship's type

    # ---- shared behaviour --------------------------------------------------------------
    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def query(self, cypher: str, params: dict[str, Any] | None = None, write: bool = False,
              allow_files: bool = False) -> list[dict[str, Any]]:
        """Run user Cypher; values always go in `params`. Refused unless `write` when it writes, and unless
        `allow_files` when it reads or writes files or URLs (`LOAD FROM`, `LOAD CSV`, `COPY`, ...)."""
        if not allow_files:
            refuse_file_access(cypher)
        if not write:
            refuse_writes(cypher)
        elif self.read_only:
            raise ReadOnlyError(f"{self.uri} is opened read-only; open it for writing to run this query")
        return self._run(cypher, params, write=write)

    def load(self, graph: KnowledgeGraph | GraphTables, progress: Progress | None = None) -> LoadSummary:
        """Merge a graph into the store: loading the same graph twice changes nothing.

        `GraphTables` (from `kg.tables.read_tables`) load without ever becoming Python objects;
        a `KnowledgeGraph` is turned into such tables first. `progress(done, total)` is called
        as rows are written. The load record says "running" until the last table is written,
        so reads of a graph whose load was killed are refused until a load completes."""
        if self.read_only:
            raise ReadOnlyError(f"{self.uri} is opened read-only; cannot load")
        self.ensure_schema()
        self._record_load(state="running", started=_now(), finished=None)
        summary = LoadSummary()
        started = time.perf_counter()
        tables = graph.to_tables() if isinstance(graph, KnowledgeGraph) else graph
        concepts, relationships = validated_tables(tables, summary.rejected)
        summary.prepare_seconds = time.perf_counter() - started
        total = concepts.num_rows + sum(t.num_rows for t in relationships.values())
        done = 0

        def advance(rows: int) -> None:
            nonlocal done
            done += rows
            if progress:
                progress(done, total)

        summary.tables["Concept"] = _timed(self._load_concepts, concepts, advance)
        for rel_type, table in relationships.items():
            if table.num_rows:
                summary.tables[rel_type] = _timed(self._load_relationships, rel_type, table, advance)
        self._record_load(state="complete", finished=_now())
        return summary

    def _record_load(self, **properties: str | None) -> None:
        assignments = ", ".join(f"l.`{p}` = ${p}" for p in properties)
        self._run(f"MERGE (l:{LOAD_RECORD} {{id: $id}}) SET {assignments}", {"id": LOAD_RECORD_ID, **properties}, write=True)

    def _has_load_record(self) -> bool:
        """Whether the database can hold a load record (LadybugDB: its table exists; Neo4j: always)."""
        return True

    def load_state(self) -> dict[str, Any] | None:
        """The record of the last load (`state`, `started`, `finished`); None for a graph loaded before
        medkg kept one, or never loaded."""
        if not self._has_load_record():
            return None
        rows = self._run(f"MATCH (l:{LOAD_RECORD} {{id: $id}}) RETURN l.state AS state, l.started AS started, "
                         "l.finished AS finished", {"id": LOAD_RECORD_ID})
        return rows[0] if rows else None

    def check_complete(self) -> None:
        """Refuse to read a graph whose last load has not finished (killed, or still going): its tables
        may hold the concepts without their relationships."""
        record = self.load_state()
        if record is not None and record["state"] != "complete":
            raise IncompleteGraphError(
                f"{self.uri} is incomplete: the load started at {record['started']} has not finished (it was "
                "interrupted, or it is still running), so its tables may be partly written. Load the graph again.")

    def link_mentions(self, rows: list[dict[str, Any]], rejected: list[tuple[str, str]] | None = None) -> dict[str, TableLoad]:
        """Merge `(:Report)-[:MENTIONS {assertion, section, count}]->(:Concept)`; rows name report, source,
        concept, assertion, section and count. Linking the same reports twice changes nothing.

        Mentions of concepts the database does not hold (reports extracted with another graph's
        index) are left out and listed in `rejected`, before anything is written."""
        if self.read_only:
            raise ReadOnlyError(f"{self.uri} is opened read-only; cannot link reports")
        self.ensure_schema()
        stored = self._stored_ids(sorted({row["concept"] for row in rows}))
        unknown = [row for row in rows if row["concept"] not in stored]
        if rejected is not None:
            rejected += [(f"report {row['report']!r} mentions {row['concept']!r}", "concept not in the graph database") for row in unknown]
        rows = [row for row in rows if row["concept"] in stored]
        reports = {row["report"]: row["source"] for row in rows}
        report_table = pa.table({"id": list(reports), "source": list(reports.values())}, schema=REPORT_SCHEMA)
        mention_table = pa.table({
            "from": [r["report"] for r in rows], "to": [r["concept"] for r in rows],
            **{p: [r[p] for r in rows] for p in MENTION_PROPERTIES},
        }, schema=MENTION_SCHEMA)
        return self._link(report_table, mention_table)

    def _stored_ids(self, ids: list[str]) -> set[str]:
        """Those of `ids` that name a stored concept."""
        return {r["id"] for r in self._run("MATCH (c:Concept) WHERE c.id IN $ids RETURN c.id AS id", {"ids": list(ids)})}

    def tables(self) -> GraphTables:
        """The stored graph as the Arrow tables `kg.tables.read_tables` gives for RRF: what training
        reads when it is pointed at a database instead of an RRF directory."""
        columns = ", ".join(f"c.`{p}` AS `{p}`" for p in CONCEPT_PROPERTIES)
        concepts = self._table(f"MATCH (c:Concept) RETURN {columns}", CONCEPT_SCHEMA)
        rel_columns = ", ".join(f"r.`{p}` AS `{p}`" for p in RELATIONSHIP_PROPERTIES)
        relations = [
            self._table(f"MATCH (a:Concept)-[r:{rel_type}]->(b:Concept) RETURN a.id AS head, b.id AS tail, $type AS type, {rel_columns}",
                        RELATION_SCHEMA, {"type": rel_type})
            for rel_type in RELATIONSHIP_TYPES
        ]
        return GraphTables(concepts, pa.concat_tables(relations))

    def _table(self, cypher: str, schema: pa.Schema, params: dict[str, Any] | None = None) -> pa.Table:
        """A read as an Arrow table; backends that return Arrow natively override this."""
        return pa.Table.from_pylist(self._run(cypher, params), schema=schema)

    def store_embeddings(self, ids: list[str], vectors: np.ndarray) -> list[str]:
        """Store one vector per concept (replacing earlier ones), for `similar`; returns the ids left out
        because the database holds no such concept."""
        if self.read_only:
            raise ReadOnlyError(f"{self.uri} is opened read-only; cannot store embeddings")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        stored = self._stored_ids(ids)
        keep = np.array([i in stored for i in ids], dtype=bool)
        matrix = np.ascontiguousarray(vectors[keep], dtype=np.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1]).cast(EMBEDDING_SCHEMA.field("vector").type)
        self._store_embeddings(pa.table({"id": pa.array([i for i, k in zip(ids, keep) if k], pa.string()), "vector": column},
                                        schema=EMBEDDING_SCHEMA))
        return [i for i, k in zip(ids, keep) if not k]

    def similar(self, concept_id: str, limit: int = 10) -> list[Similar]:
        """Concepts ranked by the cosine of their stored embeddings to this one's."""
        if limit < 1:
            raise InputError("limit must be at least 1")
        table = self._table(self.embeddings_query, EMBEDDING_SCHEMA)
        if not table.num_rows:
            raise NoEmbeddingsError(f"{self.uri} holds no concept embeddings")
        ids = table["id"].to_pylist()
        if concept_id not in ids:
            self.require_concept(concept_id)
            raise ConceptNotFoundError(f"concept {concept_id!r} has no stored embedding in {self.uri}")
        vectors = table["vector"].combine_chunks()
        if len(set(pc.list_value_length(vectors).to_pylist())) > 1:
            raise GraphDBError(f"{self.uri} holds concept embeddings of different lengths; export one run again")
        matrix = vectors.flatten().to_numpy().reshape(len(ids), -1)
        matrix = matrix / np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None)
        scores = matrix @ matrix[ids.index(concept_id)]
        order = [i for i in np.argsort(-scores, kind="stable")[: limit + 1] if ids[i] != concept_id][:limit]
        found = {r["id"]: r for r in self._run("MATCH (c:Concept) WHERE c.id IN $ids RETURN c.id AS id, c.name AS name, "
                                                "c.`group` AS `group`", {"ids": [ids[i] for i in order]})}
        return [Similar(ids[i], found[ids[i]]["name"], found[ids[i]]["group"], round(float(scores[i]), 4))
                for i in order if ids[i] in found]

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
            raise ConceptNotFoundError(f"no concept with id {concept_id!r} in {self.uri}")
        return concept

    def name_index(self) -> NameIndex:
        rows = self._run("MATCH (c:Concept) RETURN c.id AS id, c.name AS name, c.synonyms AS synonyms, size(c.sources) AS weight ORDER BY id")
        return NameIndex((r["id"], r["name"], r["synonyms"], r["weight"] or 0) for r in rows)

    def lookup(self, text: str, limit: int = 10) -> list[Hit]:
        """Concepts by name, synonym or id; the text is only ever data, never Cypher."""
        if limit < 1:
            raise InputError(f"limit must be at least 1, got {limit}")
        index = self.name_index()
        hits: list[Hit] = []
        found = index.concept_id(text.strip()) if _CUI_OR_CODE.match(text.strip()) else None
        if found is not None:  # an id, in any case
            hits.append(Hit(found, index.names[found], 100.0, found))
        hits += [h for h in index.search(text, limit) if h.id != found]
        return hits[:limit]

    def neighbors(self, concept_id: str, depth: int = 1, rel_types: list[str] | None = None, limit: int = 500) -> list[Neighbor]:
        """Concepts within `depth` hops, each at its shortest distance, breadth first."""
        if depth < 1:
            raise InputError(f"depth must be at least 1, got {depth}")
        if limit < 1:  # 0 would still return the first neighbour found
            raise InputError(f"limit must be at least 1, got {limit}")
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
        if not 1 <= max_depth <= MAX_PATH_DEPTH:
            raise InputError(f"the maximum path length must be between 1 and {MAX_PATH_DEPTH}, got {max_depth}")
        self.require_concept(a)
        self.require_concept(b)
        if a == b:
            concept = self.require_concept(a)
            return [PathStep(a, concept["name"], None, None)]
        return self._shortest_path(a, b, max_depth)

