"""LadybugDB (the maintained fork of Kùzu): the embedded default, in-process Cypher over a disk store.

Bulk loads use `COPY FROM` an Arrow table, which LadybugDB ingests column-wise; `COPY`
cannot merge, so loads first diff against what is stored and copy only what is new. This
module owns LadybugDB's dialect: its type names, and COPY's columns in table order.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kg.lookup import NameIndex

from .readonly import ReadOnlyError
from .schema import (
    CONCEPT,
    CONCEPT_EMBEDDING,
    CONCEPT_PROPERTIES,
    INTEGER,
    LOAD_PROPERTIES,
    LOAD_RECORD,
    MENTION_KEY,
    MENTION_PROPERTIES,
    MENTIONS,
    RELATIONSHIP_KEY,
    RELATIONSHIP_PROPERTIES,
    RELATIONSHIP_TYPES,
    REPORT,
    REPORT_PROPERTIES,
    STRING,
    STRINGS,
)
from .store import GraphDBError, GraphNotFoundError, GraphStore, PathStep, TableLoad, path_steps

log = logging.getLogger(__name__)
UPDATE_BATCH = 10_000
EMBEDDING_TABLE = f"{CONCEPT_EMBEDDING}(id STRING PRIMARY KEY, vector FLOAT[])"
_TYPES = {STRING: "STRING", STRINGS: "STRING[]", INTEGER: "INT64"}  # the schema's Arrow types in LadybugDB's names
_RECOVERY_PENDING = "re-open the database with read-write mode"  # an interrupted checkpoint left its shadow file
_LOCKED = "Could not set lock"


def _columns(properties: dict[str, Any], skip: str | None = None) -> str:
    """`name TYPE, ...` of a table's DDL, in the schema's order: the order COPY reads columns in."""
    return ", ".join(f"`{p}` {_TYPES[t]}" for p, t in properties.items() if p != skip)


def _plain(value: Any) -> Any:
    """Nodes, relationships and paths as dicts without LadybugDB's internal `_ID`/`_SRC` fields."""
    if isinstance(value, dict):
        if "_NODES" in value:
            return {"nodes": [_plain(n) for n in value["_NODES"]], "relationships": [_plain(r) for r in value["_RELS"]]}
        plain = {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
        if "_SRC" in value:
            plain["type"] = value["_LABEL"]
        return plain
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class EmbeddedStore(GraphStore):
    type_function = "label"
    # Vectors live in a node table keyed by the concept id: LadybugDB sets a list property at about 1 ms
    # per node (a minute for the open graph), where a COPY takes 3 s.
    embeddings_query = f"MATCH (e:{CONCEPT_EMBEDDING}) RETURN e.id AS id, e.vector AS vector"

    def __init__(self, path: str | Path, read_only: bool = True):
        import ladybug

        self.location = Path(path).expanduser()
        self.uri = f"embedded://{self.location}"
        self.read_only = read_only
        if read_only and not self.location.exists():
            raise GraphNotFoundError(f"no graph database at {self.location}")
        self.location.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(ladybug, read_only)
        except RuntimeError as error:  # locked by another writer, a damaged file, ...
            if _LOCKED in str(error):
                raise GraphDBError(f"{self.location} is being written by another process (a load in progress?); "
                                   f"try again when it has finished ({str(error).splitlines()[0]})") from None
            raise GraphDBError(f"cannot open {self.location}: {error}") from error
        self._conn = ladybug.Connection(self._db)

    def _open(self, ladybug: Any, read_only: bool) -> Any:
        """The database. A read whose writer was killed while checkpointing first lets LadybugDB finish
        that checkpoint: what any read-write open does, and possible only while no one else writes."""
        try:
            return ladybug.Database(str(self.location), read_only=read_only)
        except RuntimeError as error:
            if not (read_only and _RECOVERY_PENDING in str(error)):
                raise
        log.warning("%s: finishing the checkpoint an interrupted write left pending", self.location)
        ladybug.Database(str(self.location), read_only=False).close()
        return ladybug.Database(str(self.location), read_only=True)

    def close(self) -> None:
        self._conn.close()
        self._db.close()

    def _run(self, cypher: str, params: dict[str, Any] | None = None, write: bool = False) -> list[dict[str, Any]]:
        try:
            result = self._conn.execute(cypher, params or {})
        except RuntimeError as error:
            if "read-only" in str(error):
                raise ReadOnlyError(f"refused: {self.uri} is opened read-only ({error}). Nothing was changed.") from error
            raise GraphDBError(f"{self.uri}: {error}") from error
        columns = result.get_column_names()
        rows = []
        while result.has_next():
            rows.append({c: _plain(v) for c, v in zip(columns, result.get_next())})
        return rows

    def name_index(self) -> NameIndex:
        """Cached beside the database file as Arrow data, stamped with the database files' sizes and times and
        the concept count: any write to the database changes the stamp, and a stale, damaged or foreign cache is
        rebuilt (never unpickled: a cache file cannot run code)."""
        cache = self.location.with_name(self.location.name + ".names.arrow")
        files = [p for p in (self.location, self.location.with_name(self.location.name + ".wal")) if p.exists()]
        state = [[p.name, p.stat().st_mtime_ns, p.stat().st_size] for p in files] + [self._run(f"MATCH (c:{CONCEPT}) RETURN count(c) AS n")[0]["n"]]
        stamp = hashlib.sha256(json.dumps(state).encode()).hexdigest()
        index = NameIndex.load(cache, stamp)
        if index is not None:
            return index
        index = super().name_index()
        try:
            index.save(cache, stamp)
            self.location.with_name(self.location.name + ".names.pkl").unlink(missing_ok=True)  # left by an older medkg
        except OSError:  # a read-only location only loses the speed-up
            pass
        return index

    def _arrow(self, cypher: str, params: dict[str, Any] | None = None) -> pa.Table:
        try:
            return self._conn.execute(cypher, params or {}).get_as_arrow()
        except RuntimeError as error:
            raise GraphDBError(f"{self.uri}: {error}") from error

    def _table(self, cypher: str, schema: pa.Schema, params: dict[str, Any] | None = None) -> pa.Table:
        return self._arrow(cypher, params).select(schema.names).cast(schema)

    def ensure_schema(self) -> None:
        self._run(f"CREATE NODE TABLE IF NOT EXISTS {LOAD_RECORD}(id STRING PRIMARY KEY, {_columns(LOAD_PROPERTIES, 'id')})")
        self._run(f"CREATE NODE TABLE IF NOT EXISTS {CONCEPT}(id STRING PRIMARY KEY, {_columns(CONCEPT_PROPERTIES, 'id')})")
        for rel_type in RELATIONSHIP_TYPES:
            self._run(f"CREATE REL TABLE IF NOT EXISTS {rel_type}(FROM {CONCEPT} TO {CONCEPT}, {_columns(RELATIONSHIP_PROPERTIES)})")
        self._run(f"CREATE NODE TABLE IF NOT EXISTS {REPORT}(id STRING PRIMARY KEY, {_columns(REPORT_PROPERTIES, 'id')})")
        self._run(f"CREATE REL TABLE IF NOT EXISTS {MENTIONS}(FROM {REPORT} TO {CONCEPT}, {_columns(MENTION_PROPERTIES)})")
        self._run(f"CREATE NODE TABLE IF NOT EXISTS {EMBEDDING_TABLE}")

    def _has_load_record(self) -> bool:
        return any(row["name"] == LOAD_RECORD for row in self._run("CALL show_tables() RETURN name"))

    def _load_concepts(self, table: pa.Table, advance: Callable[[int], None]) -> TableLoad:
        load = self._merge_nodes(CONCEPT, list(CONCEPT_PROPERTIES), table)
        advance(table.num_rows)
        return load

    def _load_relationships(self, rel_type: str, table: pa.Table, advance: Callable[[int], None]) -> TableLoad:
        load = self._merge_relationships(rel_type, CONCEPT, CONCEPT, list(RELATIONSHIP_PROPERTIES), list(RELATIONSHIP_KEY), table)
        advance(table.num_rows)
        return load

    def _link(self, reports: pa.Table, mentions: pa.Table) -> dict[str, TableLoad]:
        return {
            REPORT: self._merge_nodes(REPORT, list(REPORT_PROPERTIES), reports),
            MENTIONS: self._merge_relationships(MENTIONS, REPORT, CONCEPT, list(MENTION_PROPERTIES), list(MENTION_KEY), mentions),
        }

    def _merge_nodes(self, label: str, props: list[str], table: pa.Table) -> TableLoad:
        """COPY the nodes not stored yet, SET the ones whose properties changed."""
        columns = ", ".join(f"n.`{p}` AS `{p}`" for p in props)
        new, changed, unchanged = _diff(table, self._arrow(f"MATCH (n:{label}) RETURN {columns}"), ["id"])
        if new.num_rows:  # COPY reads columns by position: the table's, id first
            self._run(f"COPY {label} FROM $rows", {"rows": new.select(props)})
        assignments = ", ".join(f"n.`{p}` = row.`{p}`" for p in props if p != "id")
        self._update(f"UNWIND $rows AS row MATCH (n:{label} {{id: row.id}}) SET {assignments}", changed)
        return TableLoad(new.num_rows, changed.num_rows, unchanged)

    def _merge_relationships(self, rel_type: str, source: str, target: str, props: list[str], key: list[str], table: pa.Table) -> TableLoad:
        """Relationships are the same when `key` matches (`from`, `to` and key properties)."""
        columns = ", ".join(f"r.`{p}` AS `{p}`" for p in props)
        stored = self._arrow(f"MATCH (a:{source})-[r:{rel_type}]->(b:{target}) RETURN a.id AS `from`, b.id AS `to`, {columns}")
        new, changed, unchanged = _diff(table, stored, key)
        if new.num_rows:  # COPY reads columns by position: from, to, then the table's properties
            self._run(f"COPY {rel_type} FROM $rows", {"rows": new.select(["from", "to", *props])})
        same = " AND ".join(f"r.`{p}` = row.`{p}`" for p in key if p not in ("from", "to"))
        assignments = ", ".join(f"r.`{p}` = row.`{p}`" for p in props if p not in key)
        self._update(
            f"UNWIND $rows AS row MATCH (a:{source} {{id: row.`from`}})-[r:{rel_type}]->(b:{target} {{id: row.`to`}}) "
            f"WHERE {same} SET {assignments}",
            changed,
        )
        return TableLoad(new.num_rows, changed.num_rows, unchanged)

    def _update(self, cypher: str, rows: pa.Table) -> None:
        for start in range(0, rows.num_rows, UPDATE_BATCH):
            self._run(cypher, {"rows": rows.slice(start, UPDATE_BATCH).to_pylist()})

    def _store_embeddings(self, table: pa.Table) -> None:
        self._run("BEGIN TRANSACTION", write=True)
        try:
            self._run(f"DROP TABLE IF EXISTS {CONCEPT_EMBEDDING}", write=True)
            self._run(f"CREATE NODE TABLE {EMBEDDING_TABLE}", write=True)
            self._run(f"COPY {CONCEPT_EMBEDDING} FROM $rows", {"rows": table}, write=True)
        except BaseException:
            self._run("ROLLBACK", write=True)
            raise
        self._run("COMMIT", write=True)

    def _shortest_path(self, a: str, b: str, max_depth: int) -> list[PathStep]:
        result = self._conn.execute(
            f"MATCH p = (a:{CONCEPT} {{id: $a}})-[:{'|'.join(RELATIONSHIP_TYPES)}* SHORTEST 1..{int(max_depth)}]-(b:{CONCEPT} {{id: $b}}) RETURN p",
            {"a": a, "b": b},
        )
        if not result.has_next():
            return []
        path = result.get_next()[0]
        nodes, rels = path["_NODES"], path["_RELS"]
        starts = [nodes[i]["id"] if rel["_SRC"] == nodes[i]["_ID"] else nodes[i + 1]["id"] for i, rel in enumerate(rels)]
        return path_steps(nodes, starts, [rel["_LABEL"] for rel in rels])


def _fingerprint(table: pa.Table, columns: list[str]) -> pa.Array:
    """One string per row over the given columns, for set membership tests (lists are not join keys)."""
    parts = []
    for name in columns:
        column = table.column(name)
        if pa.types.is_list(column.type):
            column = pc.binary_join(column, "\x1f")
        parts.append(pc.fill_null(pc.cast(column, pa.string()), "\x00"))
    return pc.binary_join_element_wise(*parts, "\x1e")


def _diff(incoming: pa.Table, stored: pa.Table, key: list[str]) -> tuple[pa.Table, pa.Table, int]:
    """Split incoming rows into (new, changed, number unchanged) against the stored rows."""
    if stored.num_rows == 0:
        return incoming, incoming.slice(0, 0), 0
    stored = stored.select(incoming.column_names).cast(incoming.schema)
    is_stored = pc.is_in(_fingerprint(incoming, key), value_set=_fingerprint(stored, key))
    is_same = pc.is_in(_fingerprint(incoming, incoming.column_names), value_set=_fingerprint(stored, stored.column_names))
    new = incoming.filter(pc.invert(is_stored))
    changed = incoming.filter(pc.and_(is_stored, pc.invert(is_same)))
    return new, changed, pc.sum(is_same).as_py() or 0
