"""Neo4j through the official driver: for graphs that outgrow one machine (clusters, Aura).

Loads are `UNWIND $rows ... MERGE` in transactions of `BATCH` rows, so they are idempotent
and each transaction stays small. Reads go through read sessions, which Neo4j itself
refuses to write in.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from .readonly import ReadOnlyError
from .schema import CONCEPT, CONCEPT_PROPERTIES, EMBEDDING_PROPERTY, MENTIONS, RELATIONSHIP_TYPES, REPORT
from .store import CredentialsError, GraphDBError, GraphStore, PathStep, TableLoad, path_steps

BATCH = 10_000

SCHEMA_STATEMENTS = (
    f"CREATE CONSTRAINT concept_id IF NOT EXISTS FOR (c:{CONCEPT}) REQUIRE c.id IS UNIQUE",
    f"CREATE INDEX concept_name IF NOT EXISTS FOR (c:{CONCEPT}) ON (c.name)",
    f"CREATE CONSTRAINT report_id IF NOT EXISTS FOR (r:{REPORT}) REQUIRE r.id IS UNIQUE",
)
_ASSIGN_CONCEPT = ", ".join(f"c.`{p}` = row.`{p}`" for p in CONCEPT_PROPERTIES if p != "id")
_STORED_CONCEPT = "old {" + ", ".join(f".`{p}`" for p in CONCEPT_PROPERTIES) + "}"  # without a stored embedding
LOAD_CONCEPTS = (
    "UNWIND $rows AS row "
    f"OPTIONAL MATCH (old:{CONCEPT} {{id: row.id}}) "
    f"WITH row, old IS NULL AS created, old IS NOT NULL AND {_STORED_CONCEPT} <> row AS changed "
    f"MERGE (c:{CONCEPT} {{id: row.id}}) SET {_ASSIGN_CONCEPT} "
    "RETURN sum(CASE WHEN created THEN 1 ELSE 0 END) AS added, sum(CASE WHEN changed THEN 1 ELSE 0 END) AS updated"
)


LINK_REPORTS = (
    f"UNWIND $rows AS row OPTIONAL MATCH (old:{REPORT} {{id: row.id}}) "
    "WITH row, old IS NULL AS created, old IS NOT NULL AND old.source <> row.source AS changed "
    f"MERGE (r:{REPORT} {{id: row.id}}) SET r.source = row.source "
    "RETURN sum(CASE WHEN created THEN 1 ELSE 0 END) AS added, sum(CASE WHEN changed THEN 1 ELSE 0 END) AS updated"
)
LINK_MENTIONS = (
    f"UNWIND $rows AS row MATCH (r:{REPORT} {{id: row.`from`}}) MATCH (c:{CONCEPT} {{id: row.`to`}}) "
    f"OPTIONAL MATCH (r)-[old:{MENTIONS} {{assertion: row.assertion, section: row.section}}]->(c) "
    "WITH r, c, row, old IS NULL AS created, old IS NOT NULL AND old.count <> row.count AS changed "
    f"MERGE (r)-[m:{MENTIONS} {{assertion: row.assertion, section: row.section}}]->(c) SET m.count = row.count "
    "RETURN sum(CASE WHEN created THEN 1 ELSE 0 END) AS added, sum(CASE WHEN changed THEN 1 ELSE 0 END) AS updated"
)


def load_relationships_statement(rel_type: str) -> str:
    """`rel_type` comes from the schema's fixed list (types cannot be parameters)."""
    return (
        "UNWIND $rows AS row "
        f"MATCH (a:{CONCEPT} {{id: row.`from`}}) MATCH (b:{CONCEPT} {{id: row.`to`}}) "
        f"OPTIONAL MATCH (a)-[old:{rel_type} {{rela: row.rela, source: row.source}}]->(b) "
        "WITH a, b, row, old IS NULL AS created, old IS NOT NULL AND (old.rel <> row.rel OR old.support <> row.support) AS changed "
        f"MERGE (a)-[r:{rel_type} {{rela: row.rela, source: row.source}}]->(b) SET r.rel = row.rel, r.support = row.support "
        "RETURN sum(CASE WHEN created THEN 1 ELSE 0 END) AS added, sum(CASE WHEN changed THEN 1 ELSE 0 END) AS updated"
    )


def shortest_path_statement(max_depth: int) -> str:
    return (
        f"MATCH p = shortestPath((a:{CONCEPT} {{id: $a}})-[:{'|'.join(RELATIONSHIP_TYPES)}*..{int(max_depth)}]-(b:{CONCEPT} {{id: $b}})) "
        "RETURN [n IN nodes(p) | n {.id, .name}] AS nodes, "
        "[r IN relationships(p) | {type: type(r), start: startNode(r).id}] AS rels"
    )


def _plain(value: Any) -> Any:
    from neo4j.graph import Node, Path, Relationship

    if isinstance(value, Node):
        return dict(value)
    if isinstance(value, Relationship):
        return {"type": value.type, **dict(value)}
    if isinstance(value, Path):
        return {"nodes": [dict(n) for n in value.nodes], "relationships": [_plain(r) for r in value.relationships]}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


CLEAR_EMBEDDINGS = f"MATCH (c:{CONCEPT}) WHERE c.{EMBEDDING_PROPERTY} IS NOT NULL REMOVE c.{EMBEDDING_PROPERTY}"
STORE_EMBEDDINGS = f"UNWIND $rows AS row MATCH (c:{CONCEPT} {{id: row.id}}) SET c.{EMBEDDING_PROPERTY} = row.vector"


# The driver's defaults wait up to 60 s for a silent server's handshake and retry a failed
# transaction for 30 s; a wrong address or scheme should say so within seconds instead.
CONNECT_TIMEOUT_S = 5.0  # TCP connect, and the Bolt/TLS handshake with it
RETRY_TIME_S = 10.0  # retries of transient errors (a cluster electing a leader), once connected


def connect(address: str, user: str, password: str) -> Any:
    """A driver whose server has answered and accepted the credentials, or a GraphDBError saying
    why not: nothing listening, no answer, TLS on one side only, refused credentials.
    The password goes to the driver only, never into a message."""
    import neo4j

    driver = neo4j.GraphDatabase.driver(address, auth=(user, password), connection_timeout=CONNECT_TIMEOUT_S,
                                        connection_acquisition_timeout=CONNECT_TIMEOUT_S, max_transaction_retry_time=RETRY_TIME_S)
    try:
        driver.verify_connectivity()
    except neo4j.exceptions.AuthError as error:
        driver.close()
        raise GraphDBError(f"{address} refused user {user!r}: check NEO4J_USER and NEO4J_PASSWORD ({error.message})") from None
    except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError) as error:
        driver.close()
        raise GraphDBError(f"cannot connect to {address}: {_connection_failure(error)}") from None
    return driver


def _connection_failure(error: BaseException) -> str:
    """What went wrong, from the chain of exceptions the driver raised."""
    import ssl

    causes = []
    while error is not None and len(causes) < 10:
        causes.append(error)
        error = error.__cause__ or error.__context__
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "nothing is listening there (connection refused); check the host and port"
    if any(isinstance(e, ssl.SSLError) or type(e).__name__ == "BoltSecurityError" for e in causes):
        return ("the TLS handshake failed: a bolt+s:// or neo4j+s:// URI needs a server with TLS enabled "
                "(use bolt:// or neo4j:// for one without; +ssc accepts a self-signed certificate)")
    if any(isinstance(e, TimeoutError) for e in causes):
        return (f"no Bolt answer within {CONNECT_TIMEOUT_S:.0f} s; check the port (7687 by default), "
                "and the scheme: bolt:// to a server that requires TLS gets no answer")
    return (f"{str(causes[0]).splitlines()[-1]}; check that this is a Bolt port (7687 by default) and that the scheme "
            "matches the server's TLS setting (bolt+s:// or neo4j+s:// for a server with TLS)")


class Neo4jStore(GraphStore):
    batch_size = BATCH  # rows per UNWIND transaction; bench/graph_load.py measures others
    embeddings_query = (f"MATCH (c:{CONCEPT}) WHERE c.{EMBEDDING_PROPERTY} IS NOT NULL "
                        f"RETURN c.id AS id, c.{EMBEDDING_PROPERTY} AS vector")

    def __init__(self, driver: Any, uri: str, database: str | None = None, read_only: bool = True):
        self._driver = driver
        self.uri = uri
        self.database = database
        self.read_only = read_only

    @classmethod
    def from_environment(cls, uri: str, read_only: bool = True) -> Neo4jStore:
        """Credentials come from NEO4J_USER / NEO4J_PASSWORD; the database from the URI path or NEO4J_DATABASE.
        Connects at once, so a wrong address, scheme or password is reported here (see `connect`)."""
        parts = urlsplit(uri)
        database = parts.path.strip("/") or os.environ.get("NEO4J_DATABASE") or None
        address = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], "", "", ""))
        user, password = os.environ.get("NEO4J_USER", "neo4j"), os.environ.get("NEO4J_PASSWORD")
        if password is None:
            raise CredentialsError(f"set NEO4J_PASSWORD (and NEO4J_USER, default 'neo4j') to connect to {address}")
        return cls(connect(address, user, password), address + (f"/{database}" if database else ""), database, read_only)

    def close(self) -> None:
        self._driver.close()

    def _run(self, cypher: str, params: dict[str, Any] | None = None, write: bool = False) -> list[dict[str, Any]]:
        import neo4j

        def work(tx: Any) -> list[dict[str, Any]]:
            result = tx.run(cypher, params or {})
            return [{k: _plain(v) for k, v in record.items()} for record in result]

        mode = neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS
        try:
            with self._driver.session(database=self.database, default_access_mode=mode) as session:
                return session.execute_write(work) if write else session.execute_read(work)
        except neo4j.exceptions.Neo4jError as error:
            if "AccessMode" in (error.code or ""):
                raise ReadOnlyError(f"refused: {self.uri} read session ({error.message}). Nothing was changed.") from error
            raise GraphDBError(f"{self.uri}: {error.code}: {error.message}") from error
        except neo4j.exceptions.DriverError as error:  # unreachable server, bad credentials, ...
            raise GraphDBError(f"{self.uri}: {error}") from error

    def ensure_schema(self) -> None:
        for statement in SCHEMA_STATEMENTS:
            self._run(statement, write=True)

    def _batched(self, cypher: str, table: pa.Table, advance: Callable[[int], None] = lambda rows: None) -> TableLoad:
        load = TableLoad()
        for start in range(0, table.num_rows, self.batch_size):
            batch = table.slice(start, self.batch_size)
            row = self._run(cypher, {"rows": batch.to_pylist()}, write=True)[0]
            load.added += row["added"]
            load.updated += row["updated"]
            advance(batch.num_rows)
        load.unchanged = table.num_rows - load.added - load.updated
        return load

    def _load_concepts(self, table: pa.Table, advance: Callable[[int], None]) -> TableLoad:
        return self._batched(LOAD_CONCEPTS, table, advance)

    def _load_relationships(self, rel_type: str, table: pa.Table, advance: Callable[[int], None]) -> TableLoad:
        return self._batched(load_relationships_statement(rel_type), table, advance)

    def _link(self, reports: pa.Table, mentions: pa.Table) -> dict[str, TableLoad]:
        return {REPORT: self._batched(LINK_REPORTS, reports), MENTIONS: self._batched(LINK_MENTIONS, mentions)}

    def _store_embeddings(self, table: pa.Table) -> None:
        self._run(CLEAR_EMBEDDINGS, write=True)  # vectors of another model must not stay on concepts left out
        for start in range(0, table.num_rows, self.batch_size):
            self._run(STORE_EMBEDDINGS, {"rows": table.slice(start, self.batch_size).to_pylist()}, write=True)

    def _shortest_path(self, a: str, b: str, max_depth: int) -> list[PathStep]:
        rows = self._run(shortest_path_statement(max_depth), {"a": a, "b": b})
        if not rows:
            return []
        rels = rows[0]["rels"]
        return path_steps(rows[0]["nodes"], [r["start"] for r in rels], [r["type"] for r in rels])
