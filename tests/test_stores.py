"""The store interface, run against both backends: the embedded LadybugDB, and a live Bolt server
for the Neo4j backend (`bolt_environment`: ArcadeDB's Bolt plugin started for the session, or
the server $NEO4J_URI names).

Where ArcadeDB behaves unlike Neo4j, the test says so at that point and checks medkg's own
behaviour instead; nothing is skipped."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pyarrow as pa
import pytest

from graphdb.neo4j_store import CONNECT_TIMEOUT_S, Neo4jStore
from graphdb.readonly import ReadOnlyError
from graphdb.store import ConceptNotFoundError, GraphDBError
from graphdb.uri import open_store
from medkg.cli import main
from tests.bolt_server import free_port
from tests.graphs import PREFIX, small_graph

REPORT = PREFIX + "R1"  # ids under PREFIX, so a shared live database is cleaned of them


def _clean(uri: str) -> None:
    with open_store(uri, read_only=False) as store:
        for label in ("Concept", "Report"):
            store.query(f"MATCH (n:{label}) WHERE n.id STARTS WITH $p DETACH DELETE n", {"p": PREFIX}, write=True)


@pytest.fixture
def bolt(bolt_environment, monkeypatch) -> str:
    """The live server's URI, with its credentials in this test's environment."""
    for name, value in bolt_environment.items():
        monkeypatch.setenv(name, value)
    return bolt_environment["NEO4J_URI"]


@pytest.fixture(params=["embedded", "bolt"])
def uri(request, tmp_path):
    if request.param == "embedded":
        yield f"embedded://{tmp_path / 'graph'}"
        return
    uri = request.getfixturevalue("bolt")
    _clean(uri)
    yield uri
    _clean(uri)


def arcadedb(store) -> bool:
    """Whether the store talks to ArcadeDB's Bolt plugin, which differs from Neo4j where the tests say."""
    return isinstance(store, Neo4jStore) and "ArcadeDB" in store._driver.get_server_info().agent


def prefixed_counts(store) -> dict[str, int]:
    return {
        "concepts": store.query("MATCH (c:Concept) WHERE c.id STARTS WITH $p RETURN count(c) AS n", {"p": PREFIX})[0]["n"],
        "relationships": store.query(
            "MATCH (a:Concept)-[r]->(b:Concept) WHERE a.id STARTS WITH $p RETURN count(r) AS n", {"p": PREFIX}
        )[0]["n"],
    }


def loaded(uri):
    store = open_store(uri, read_only=False)
    store.load(small_graph(), progress=False)
    return store


def test_load_is_idempotent_and_reports_changes(uri):
    kg = small_graph()
    with open_store(uri, read_only=False) as store:
        first = store.load(kg, progress=False)
        assert first.tables["Concept"].added == 7 and first.tables["IS_A"].added == 3
        counts = prefixed_counts(store)
        assert counts == {"concepts": 7, "relationships": 5}
        by_type = store.counts()
        assert (by_type["IS_A"], by_type["LOCATED_AT"], by_type["CO_OCCURS_WITH"]) == (3, 1, 1)
        second = store.load(kg, progress=False)
        assert prefixed_counts(store) == counts and store.counts() == by_type
        assert all(t.added == 0 and t.updated == 0 for t in second.tables.values())
        assert second.tables["Concept"].unchanged == 7

        kg.graph.nodes["T:heart"]["synonyms"] = ["cor"]
        kg.graph.edges["T:effusion", "T:pleura", ("LOCATED_AT", "located_at", "IUXRAY")]["support"] = 13
        third = store.load(kg, progress=False)
        assert third.tables["Concept"].updated == 1 and third.tables["LOCATED_AT"].updated == 1
        assert prefixed_counts(store) == counts
        assert store.concept("T:heart")["synonyms"] == ["cor"]
        support = store.query("MATCH (:Concept {id: $a})-[r:LOCATED_AT]->(:Concept {id: $b}) RETURN r.support AS s", {"a": "T:effusion", "b": "T:pleura"})
        assert support == [{"s": 13}]


def test_the_stored_graph_reads_back_as_the_tables_it_was_loaded_from(uri):
    def rows(table: pa.Table, key: list[str]) -> list[dict]:
        return sorted((r for r in table.to_pylist() if r[key[0]].startswith(PREFIX)), key=lambda r: [r[k] for k in key])

    expected = small_graph().to_tables()
    with loaded(uri) as store:
        stored = store.tables()
    assert rows(stored.concepts, ["id"]) == rows(expected.concepts, ["id"])
    assert rows(stored.relations, ["head", "tail", "type"]) == rows(expected.relations, ["head", "tail", "type"])


def test_bad_records_are_rejected_with_reasons_and_the_rest_loads(uri):
    kg = small_graph()
    from kg.graph import Concept, Relation

    kg.add_concept(Concept("T:nameless", "  "))
    kg.add_relation(Relation("T:nameless", "IS_A", "T:disease", "CHD", "isa", "TEST"))
    with open_store(uri, read_only=False) as store:
        summary = store.load(kg, progress=False)
        assert sorted(reason for _, reason in summary.rejected) == ["empty id or name", "endpoint concept rejected"]
        assert "T:nameless" in str(summary)
        assert prefixed_counts(store) == {"concepts": 7, "relationships": 5}


def test_neighbors_by_depth_and_relationship_type(uri):
    with loaded(uri) as store:
        one = {n.id: n for n in store.neighbors("T:effusion")}
        assert set(one) == {"T:pleural_disease", "T:pleura", "T:ptx"}
        assert one["T:pleura"].relation == "LOCATED_AT" and one["T:pleura"].direction == "out"
        two = {n.id: n.distance for n in store.neighbors("T:effusion", depth=2, rel_types=["is_a"])}
        assert two == {"T:pleural_disease": 1, "T:ptx": 2, "T:disease": 2}
        with pytest.raises(ValueError, match="unknown relationship type"):
            store.neighbors("T:effusion", rel_types=["IS_A]->() DETACH DELETE (x"])
        with pytest.raises(ConceptNotFoundError, match="no concept with id"):
            store.neighbors("T:nothing")


def test_shortest_path(uri):
    with loaded(uri) as store:
        steps = store.path("T:pleura", "T:disease")
        assert [s.id for s in steps] == ["T:pleura", "T:effusion", "T:pleural_disease", "T:disease"]
        assert [(s.relation, s.direction) for s in steps] == [("LOCATED_AT", "in"), ("IS_A", "out"), ("IS_A", "out"), (None, None)]
        assert store.path("T:heart", "T:disease") == []


def test_query_is_read_only_unless_asked(uri, monkeypatch):
    with loaded(uri) as store:
        before = prefixed_counts(store)
    with open_store(uri) as store:  # read-only
        sent = []
        run = store._run
        monkeypatch.setattr(store, "_run", lambda *args, **kwargs: sent.append(args) or run(*args, **kwargs))
        for cypher in ["MATCH (c:Concept) DETACH DELETE c", "MATCH (c:Concept) SET c.name = 'x'", "create (:Concept {id: 'T:new'})"]:
            with pytest.raises(ReadOnlyError, match="writes .*read-only"):
                store.query(cypher)
        with pytest.raises(ReadOnlyError):
            store.query("CREATE (:Concept {id: 'T:new', name: 'x'})", write=True)
        assert sent == []  # medkg's guard refused every write before anything reached the database
        # Bypassing medkg's guard: LadybugDB opened read-only and Neo4j's read sessions refuse the write.
        # ArcadeDB 26.10's Bolt plugin does not: it runs writes in READ sessions, so against it medkg's
        # guard above is the only protection, and this checks the difference is still there.
        bypass = "CREATE (:Concept {id: 'T:new', name: 'x'})"
        if arcadedb(store):
            store._run(bypass)
            assert prefixed_counts(store)["concepts"] == before["concepts"] + 1
            with open_store(uri, read_only=False) as writer:
                writer.query("MATCH (c:Concept {id: 'T:new'}) DELETE c", write=True)
        else:
            with pytest.raises(ReadOnlyError, match="(?i)read"):
                store._run(bypass)
        assert prefixed_counts(store) == before
        rows = store.query("MATCH (c:Concept) WHERE c.name = $name RETURN c.id AS id", {"name": "pleura"})
        assert rows == [{"id": "T:pleura"}]
        # Words inside strings are data, not clauses.
        assert store.query("MATCH (c:Concept) WHERE c.name = 'CREATE' RETURN c.id") == []
    with open_store(uri, read_only=False) as store:
        store.query("MATCH (c:Concept {id: $id}) SET c.name = $name", {"id": "T:heart", "name": "cor"}, write=True)
        assert store.concept("T:heart")["name"] == "cor"


def test_a_bad_statement_is_one_clear_error(uri):
    # ArcadeDB answers every error with a generic gql_status; medkg's message names the URI and the server's words.
    with loaded(uri) as store, pytest.raises(GraphDBError) as error:
        store.query("MATCH (c:Concept RETURN c")
    assert str(error.value).startswith(f"{store.uri}: ")


def test_lookup_text_full_of_cypher_is_only_text(uri):
    hostile = "'}) MATCH (n) DETACH DELETE n // \" RETURN 1; DROP TABLE Concept"
    with loaded(uri) as store:
        before = prefixed_counts(store)
        hits = store.lookup(hostile)  # ranked as a name like any other: no error, no effect
        assert all(store.concept(h.id) is not None for h in hits)
        assert prefixed_counts(store) == before
        hit = store.lookup('it\'s "quoted" {name: $x}', limit=1)[0]
        assert hit.id == "T:isolated"
        assert store.lookup("pleural efusion", limit=1)[0].id == "T:effusion"
        assert store.lookup("effusions")[0].id == "T:effusion"


def test_relation_to_an_id_never_added_as_a_concept_is_rejected(uri):
    from kg.graph import Relation

    kg = small_graph()
    kg.add_relation(Relation("T:effusion", "RELATED_TO", "T:ghost", "RO", "", "TEST"))
    with open_store(uri, read_only=False) as store:
        summary = store.load(kg, progress=False)
        assert sorted(summary.rejected) == [("T:effusion -[RELATED_TO]-> T:ghost", "endpoint concept rejected"),
                                            ("concept 'T:ghost'", "relation endpoint without a concept record")]
        assert prefixed_counts(store) == {"concepts": 7, "relationships": 5}


def test_mentions_link_idempotently_and_paths_stay_among_concepts(uri):
    def mention(concept: str, count: int = 1) -> dict:
        return {"report": REPORT, "source": "csv", "concept": concept, "assertion": "present", "section": "FINDINGS", "count": count}

    with loaded(uri) as store:
        rejected = []
        loads = store.link_mentions([mention(c) for c in ("T:heart", "T:isolated", "T:not-in-the-graph")], rejected)
        assert loads["Report"].added == 1 and loads["MENTIONS"].added == 2
        assert rejected == [(f"report {REPORT!r} mentions 'T:not-in-the-graph'", "concept not in the graph database")]
        again = store.link_mentions([mention("T:heart"), mention("T:isolated", count=3)])
        assert (again["Report"].unchanged, again["MENTIONS"].unchanged, again["MENTIONS"].updated) == (1, 1, 1)
        linked = store.query("MATCH (:Report {id: $r})-[m:MENTIONS]->(c:Concept) RETURN c.id AS id, m.count AS n ORDER BY id", {"r": REPORT})
        assert linked == [{"id": "T:heart", "n": 1}, {"id": "T:isolated", "n": 3}]
        # Two concepts linked only through a report have no path between them.
        assert store.path("T:heart", "T:isolated") == []


def test_stored_vectors_rank_concepts_by_cosine(uri):
    ids = ["T:effusion", "T:ptx", "T:pleura", "T:heart", "T:not-in-graph"]
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [-1, 0, 0], [1, 0, 0]], dtype=np.float32)
    loaded(uri).close()
    with open_store(uri) as store:
        with pytest.raises(GraphDBError, match="no concept embeddings"):
            store.similar("T:effusion")
        with pytest.raises(ReadOnlyError):
            store.store_embeddings(ids, vectors)
    with open_store(uri, read_only=False) as store:
        assert store.store_embeddings(ids, vectors) == ["T:not-in-graph"]
    with open_store(uri) as store:
        ranked = store.similar("T:effusion", limit=3)
        assert [s.id for s in ranked] == ["T:ptx", "T:pleura", "T:heart"]
        assert ranked[0].name == "pneumothorax" and ranked[0].group == "DISO"
        assert ranked[0].similarity == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-4)
        assert ranked[2].similarity == pytest.approx(-1.0)
        with pytest.raises(ConceptNotFoundError, match="no stored embedding"):
            store.similar("T:disease")
        with pytest.raises(ConceptNotFoundError, match="no concept"):
            store.similar("T:nope")
    with open_store(uri, read_only=False) as store:
        store.store_embeddings(["T:effusion", "T:heart"], np.array([[1, 0], [1, 0]], dtype=np.float32))  # replaces
        assert [s.id for s in store.similar("T:effusion")] == ["T:heart"]
        reload = store.load(small_graph(), progress=False)  # loads leave stored vectors alone
        assert reload.tables["Concept"].unchanged == 7 and not reload.tables["Concept"].updated
        assert [s.id for s in store.similar("T:effusion")] == ["T:heart"]


def test_the_command_line_loads_and_answers_from_either_backend(uri, tmp_path, capsys):
    from kg.write import write_graph_rrf

    write_graph_rrf(small_graph(), tmp_path / "rrf")
    load = ["kg", "load", str(tmp_path / "rrf"), "--graph", uri, "--quiet"]
    assert main(load) == 0 and main(load) == 0
    second = capsys.readouterr().out.split("table ")[-1]  # the second load's summary
    assert "Concept" in second and "rejected 0" in second
    assert [line.split()[1:3] for line in second.splitlines()[1:-1]] == [["0", "0"]] * (len(second.splitlines()) - 2)
    query = ["kg", "query", "MATCH (c:Concept)-[r:IS_A]->(p:Concept) WHERE c.id STARTS WITH $p RETURN c.id AS id ORDER BY id",
             "--param", f"p={PREFIX}", "--graph", uri, "--json"]
    assert main(query) == 0
    assert json.loads(capsys.readouterr().out) == [{"id": "T:effusion"}, {"id": "T:pleural_disease"}, {"id": "T:ptx"}]


def test_credentials_never_appear_in_messages():
    with pytest.raises(ValueError) as error:
        open_store("http://neo4j:s3cret@db.example.org:7474")
    assert "s3cret" not in str(error.value) and "db.example.org" in str(error.value)


# ---- connections that fail: a clear message within seconds, never the password ------------------

def refused_connection(uri: str, bound_s: float) -> str:
    started = time.monotonic()
    with pytest.raises(GraphDBError) as error:
        open_store(uri)
    assert time.monotonic() - started < bound_s
    return str(error.value)


def test_nothing_listening_fails_at_once(monkeypatch):
    monkeypatch.setenv("NEO4J_PASSWORD", "pw-that-must-not-show")
    message = refused_connection(f"bolt://127.0.0.1:{free_port()}", bound_s=3)
    assert "nothing is listening" in message and "pw-that-must-not-show" not in message


def test_a_server_that_never_answers_fails_after_the_connect_timeout(monkeypatch):
    monkeypatch.setenv("NEO4J_PASSWORD", "pw-that-must-not-show")
    with socket.socket() as silent:  # the kernel completes connections to it; nothing ever answers (the driver's default waits 60 s)
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        message = refused_connection(f"bolt://127.0.0.1:{silent.getsockname()[1]}", bound_s=CONNECT_TIMEOUT_S + 3)
    assert "no Bolt answer" in message and "pw-that-must-not-show" not in message


def test_a_wrong_password_is_named_as_such_and_never_shown(bolt, monkeypatch, capsys):
    monkeypatch.setenv("NEO4J_PASSWORD", "wrong-pw-that-must-not-show")
    message = refused_connection(bolt, bound_s=3)
    assert "refused user" in message and "NEO4J_PASSWORD" in message and "wrong-pw" not in message
    assert main(["kg", "info", "--graph", bolt]) == 2  # the command line prints it as one line, without a traceback
    err = capsys.readouterr().err
    assert "refused user" in err and "Traceback" not in err and "wrong-pw" not in err


def test_tls_asked_of_a_plain_server_says_so(bolt, bolt_environment):
    message = refused_connection(bolt.replace("bolt://", "bolt+s://"), bound_s=3)
    assert "TLS handshake failed" in message and bolt_environment["NEO4J_PASSWORD"] not in message
