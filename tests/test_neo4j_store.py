"""The Neo4j backend without a server: every statement it sends goes through Neo4j's own Cypher
parser, and a recording driver checks sessions, access modes, batching and credentials.
A live server is exercised by tests/test_stores.py whenever NEO4J_URI is set."""

from __future__ import annotations

from typing import Any

import neo4j
import numpy as np
import pytest

from graphdb import neo4j_store
from graphdb.neo4j_store import BATCH, Neo4jStore
from graphdb.readonly import ReadOnlyError
from graphdb.uri import open_store
from kg.graph import Concept, KnowledgeGraph
from tests.graphs import small_graph
from tests.neo4j_cypher import validate_cypher


class Record(dict):
    """What the store reads of a neo4j.Record: `items()`."""


class RecordingDriver:
    """Stands in for neo4j.Driver; answers just enough for the store's own follow-up logic."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str, str | None]] = []  # (cypher, params, access mode, database)

    def session(self, database: str | None = None, default_access_mode: str = neo4j.WRITE_ACCESS):
        return RecordingSession(self, database, default_access_mode)

    def verify_connectivity(self) -> None:
        self.verified = True

    def close(self) -> None:
        pass


class RecordingSession:
    def __init__(self, driver: RecordingDriver, database: str | None, mode: str):
        self.driver, self.database, self.mode = driver, database, mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute_read(self, work):
        assert self.mode == neo4j.READ_ACCESS, "a read transaction in a write session"
        return work(self)

    def execute_write(self, work):
        assert self.mode == neo4j.WRITE_ACCESS, "a write transaction in a read session"
        return work(self)

    def run(self, cypher: str, params: dict[str, Any]):
        self.driver.sent.append((cypher, params, self.mode, self.database))
        if "RETURN sum(CASE WHEN created" in cypher:  # loads and links
            return [Record(added=len(params["rows"]), updated=0)]
        if "count(" in cypher:
            return [Record(n=0)]
        if cypher.startswith("MATCH (c:Concept {id: $id}) RETURN c"):
            return [Record(c={"id": params["id"], "name": params["id"]})]
        if cypher.startswith("MATCH (c:Concept) WHERE c.id IN $ids RETURN c.id AS id"):  # existence checks, names
            return [Record(id=i, name=i, group="DISO") for i in params["ids"]]
        if "AS vector" in cypher:
            return [Record(id="T:effusion", vector=[1.0, 0.0]), Record(id="T:ptx", vector=[0.6, 0.8])]
        if "c.synonyms AS synonyms" in cypher:
            return [Record(id="T:effusion", name="pleural effusion", synonyms=["effusion"], weight=1)]
        return []


@pytest.fixture
def driver():
    return RecordingDriver()


def exercise(store: Neo4jStore) -> None:
    """Everything a user can ask of the store."""
    store.load(small_graph(), progress=False)
    store.counts()
    store.lookup("pleural efusion")
    store.lookup("C0032227")
    store.neighbors("T:effusion", depth=2)
    store.neighbors("T:effusion", rel_types=["IS_A", "LOCATED_AT"])
    store.path("T:pleura", "T:disease", max_depth=4)
    store.query("MATCH (c:Concept) WHERE c.name = $name RETURN c", {"name": "pleura"})
    store.query("MATCH (c:Concept {id: $id}) SET c.name = $name", {"id": "T:heart", "name": "cor"}, write=True)
    store.link_mentions([{"report": "r1", "source": "csv", "concept": "T:effusion", "assertion": "absent", "section": "FINDINGS", "count": 2}])
    store.tables()
    store.store_embeddings(["T:effusion", "T:ptx"], np.eye(2, dtype=np.float32))
    store.similar("T:effusion")


def test_every_statement_sent_parses_with_neo4js_parser(driver):
    exercise(Neo4jStore(driver, "neo4j://test", read_only=False))
    statements = sorted({cypher for cypher, *_ in driver.sent})
    assert len(statements) >= 12
    errors = validate_cypher(statements)
    bad = {s: e for s, e in zip(statements, errors) if e}
    assert not bad, bad


def test_the_parser_catches_what_ladybug_would_accept(driver):
    # The embedded dialect's DDL must never reach Neo4j; the parser tells them apart.
    errors = validate_cypher(["CREATE NODE TABLE Concept(id STRING PRIMARY KEY)", "MATCH p = (a)-[* SHORTEST 1..3]-(b) RETURN p"])
    assert all(errors)


def test_values_travel_as_parameters_never_inside_the_statement(driver):
    exercise(Neo4jStore(driver, "neo4j://test", read_only=False))
    text = " ".join(cypher for cypher, *_ in driver.sent)
    for value in ("pleural effusion", "T:effusion", "fluid in the pleural space", "IUXRAY", "cor"):
        assert value not in text


def test_reads_use_read_sessions_and_only_loads_and_write_queries_write(driver):
    store = Neo4jStore(driver, "neo4j://test", database="kg", read_only=False)
    exercise(store)
    writes = {cypher for cypher, _, mode, _ in driver.sent if mode == neo4j.WRITE_ACCESS}
    assert writes and all(("MERGE" in c or "CREATE" in c or " SET " in c or " REMOVE " in c) for c in writes)
    reads = [cypher for cypher, _, mode, _ in driver.sent if mode == neo4j.READ_ACCESS]
    assert any("shortestPath" in c for c in reads) and any("count(" in c for c in reads)
    assert {database for *_, database in driver.sent} == {"kg"}


def test_read_only_store_refuses_writes_before_sending_anything(driver):
    store = Neo4jStore(driver, "neo4j://test", read_only=True)
    with pytest.raises(ReadOnlyError, match=r"the query writes \(DETACH\)"):
        store.query("MATCH (c:Concept) DETACH DELETE c")
    with pytest.raises(ReadOnlyError, match="read-only"):
        store.query("MATCH (c:Concept) DETACH DELETE c", write=True)
    with pytest.raises(ReadOnlyError, match="cannot load"):
        store.load(small_graph(), progress=False)
    assert driver.sent == []


def test_loads_merge_in_transactions_of_about_10k_rows(driver):
    kg = KnowledgeGraph()
    for i in range(2 * BATCH + 5):
        kg.add_concept(Concept(f"T:{i}", f"concept {i}"))
    summary = Neo4jStore(driver, "neo4j://test", read_only=False).load(kg, progress=False)
    batches = [params["rows"] for cypher, params, *_ in driver.sent if "UNWIND $rows" in cypher]
    assert [len(b) for b in batches] == [BATCH, BATCH, 5]
    assert all("MERGE (c:Concept {id: row.id})" in cypher for cypher, params, *_ in driver.sent if "UNWIND" in cypher)
    assert summary.tables["Concept"].added == 2 * BATCH + 5


def test_credentials_come_from_the_environment_and_stay_out_of_the_uri(monkeypatch):
    seen = {}

    def fake_driver(address, auth, **settings):
        seen.update(address=address, auth=auth, settings=settings)
        seen["driver"] = RecordingDriver()
        return seen["driver"]

    monkeypatch.setattr(neo4j.GraphDatabase, "driver", fake_driver)
    monkeypatch.setenv("NEO4J_USER", "reader")
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret")
    store = open_store("neo4j+s://someone@db.example.org:7687/umls")
    assert isinstance(store, Neo4jStore)
    assert (seen["address"], seen["auth"]) == ("neo4j+s://db.example.org:7687", ("reader", "s3cret"))
    assert seen["driver"].verified  # connected up front, so a wrong address fails at once, not at the first query
    assert seen["settings"]["connection_acquisition_timeout"] <= 10 and seen["settings"]["max_transaction_retry_time"] <= 10
    assert store.database == "umls" and "s3cret" not in store.uri and "someone" not in store.uri
    monkeypatch.delenv("NEO4J_PASSWORD")
    with pytest.raises(PermissionError, match="NEO4J_PASSWORD"):
        open_store("bolt://localhost:7687")


def test_unknown_graph_uri_is_a_clear_error():
    with pytest.raises(ValueError, match="embedded://PATH or a Neo4j URI"):
        open_store("postgres://localhost/kg")


def test_schema_statements_declare_uniqueness_and_name_index():
    assert any("REQUIRE c.id IS UNIQUE" in s for s in neo4j_store.SCHEMA_STATEMENTS)
    assert any("ON (c.name)" in s for s in neo4j_store.SCHEMA_STATEMENTS)


def test_embeddings_are_set_on_concepts_in_write_sessions_and_ranked(driver):
    store = Neo4jStore(driver, "neo4j://test", read_only=False)
    assert store.store_embeddings(["T:effusion", "T:ptx"], np.array([[1, 0], [0.6, 0.8]], dtype=np.float32)) == []
    statements = [cypher for cypher, *_ in driver.sent]
    clear = next(i for i, c in enumerate(statements) if "REMOVE c.embedding" in c)
    assert clear < next(i for i, c in enumerate(statements) if "SET c.embedding" in c)  # an earlier model's vectors go
    sets = [(params, mode) for cypher, params, mode, _ in driver.sent if "SET c.embedding" in cypher]
    assert len(sets) == 1 and sets[0][1] == neo4j.WRITE_ACCESS
    assert sets[0][0]["rows"][1]["id"] == "T:ptx" and sets[0][0]["rows"][1]["vector"] == pytest.approx([0.6, 0.8])
    (hit,) = store.similar("T:effusion")
    assert (hit.id, hit.similarity) == ("T:ptx", pytest.approx(0.6))
