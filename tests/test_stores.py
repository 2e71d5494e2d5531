"""The store interface, run against every backend available: always the embedded LadybugDB,
and a live Neo4j whenever NEO4J_URI (with NEO4J_USER / NEO4J_PASSWORD) is set."""

from __future__ import annotations

import os

import pytest

from graphdb.readonly import ReadOnlyError
from graphdb.store import ConceptNotFoundError
from graphdb.uri import open_store
from tests.graphs import PREFIX, small_graph

BACKENDS = ["embedded"] + (["neo4j"] if os.environ.get("NEO4J_URI") else [])


@pytest.fixture(params=BACKENDS)
def uri(request, tmp_path):
    if request.param == "embedded":
        yield f"embedded://{tmp_path / 'graph'}"
        return
    uri = os.environ["NEO4J_URI"]
    yield uri
    with open_store(uri, read_only=False) as store:
        store.query("MATCH (c:Concept) WHERE c.id STARTS WITH $p DETACH DELETE c", {"p": PREFIX}, write=True)


def test_counts(store) -> dict[str, int]:
    return {
        "concepts": store.query("MATCH (c:Concept) WHERE c.id STARTS WITH $p RETURN count(c) AS n", {"p": PREFIX})[0]["n"],
        "relationships": store.query(
            "MATCH (a:Concept)-[r]->(b:Concept) WHERE a.id STARTS WITH $p RETURN count(r) AS n", {"p": PREFIX}
        )[0]["n"],
    }


test_counts.__test__ = False  # a helper, not a test


def loaded(uri):
    store = open_store(uri, read_only=False)
    store.load(small_graph(), progress=False)
    return store


def test_load_is_idempotent_and_reports_changes(uri):
    kg = small_graph()
    with open_store(uri, read_only=False) as store:
        first = store.load(kg, progress=False)
        assert first.tables["Concept"].added == 7 and first.tables["IS_A"].added == 3
        counts = test_counts(store)
        assert counts == {"concepts": 7, "relationships": 5}
        second = store.load(kg, progress=False)
        assert test_counts(store) == counts
        assert all(t.added == 0 and t.updated == 0 for t in second.tables.values())
        assert second.tables["Concept"].unchanged == 7

        kg.graph.nodes["T:heart"]["synonyms"] = ["cor"]
        kg.graph.edges["T:effusion", "T:pleura", ("LOCATED_AT", "located_at", "IUXRAY")]["support"] = 13
        third = store.load(kg, progress=False)
        assert third.tables["Concept"].updated == 1 and third.tables["LOCATED_AT"].updated == 1
        assert test_counts(store) == counts
        assert store.concept("T:heart")["synonyms"] == ["cor"]
        support = store.query("MATCH (:Concept {id: $a})-[r:LOCATED_AT]->(:Concept {id: $b}) RETURN r.support AS s", {"a": "T:effusion", "b": "T:pleura"})
        assert support == [{"s": 13}]


def test_bad_records_are_rejected_with_reasons_and_the_rest_loads(uri):
    kg = small_graph()
    from kg.graph import Concept, Relation

    kg.add_concept(Concept("T:nameless", "  "))
    kg.add_relation(Relation("T:nameless", "IS_A", "T:disease", "CHD", "isa", "TEST"))
    with open_store(uri, read_only=False) as store:
        summary = store.load(kg, progress=False)
        assert sorted(reason for _, reason in summary.rejected) == ["empty id or name", "endpoint concept rejected"]
        assert "T:nameless" in str(summary)
        assert test_counts(store) == {"concepts": 7, "relationships": 5}


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


def test_query_is_read_only_unless_asked(uri):
    with loaded(uri) as store:
        before = test_counts(store)
    with open_store(uri) as store:  # read-only
        for cypher in ["MATCH (c:Concept) DETACH DELETE c", "MATCH (c:Concept) SET c.name = 'x'", "create (:Concept {id: 'T:new'})"]:
            with pytest.raises(ReadOnlyError, match="pass --write"):
                store.query(cypher)
        with pytest.raises(ReadOnlyError):
            store.query("CREATE (:Concept {id: 'T:new', name: 'x'})", write=True)
        # Bypassing the early check, the database itself refuses: read-only DB / read session.
        with pytest.raises(Exception, match="(?i)read"):
            store._run("CREATE (:Concept {id: 'T:new', name: 'x'})")
        assert test_counts(store) == before
        rows = store.query("MATCH (c:Concept) WHERE c.name = $name RETURN c.id AS id", {"name": "pleura"})
        assert rows == [{"id": "T:pleura"}]
        # Words inside strings are data, not clauses.
        assert store.query("MATCH (c:Concept) WHERE c.name = 'CREATE' RETURN c.id") == []
    with open_store(uri, read_only=False) as store:
        store.query("MATCH (c:Concept {id: $id}) SET c.name = $name", {"id": "T:heart", "name": "cor"}, write=True)
        assert store.concept("T:heart")["name"] == "cor"


def test_lookup_text_full_of_cypher_is_only_text(uri):
    hostile = "'}) MATCH (n) DETACH DELETE n // \" RETURN 1; DROP TABLE Concept"
    with loaded(uri) as store:
        before = test_counts(store)
        hits = store.lookup(hostile)  # ranked as a name like any other: no error, no effect
        assert all(store.concept(h.id) is not None for h in hits)
        assert test_counts(store) == before
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
        assert test_counts(store) == {"concepts": 7, "relationships": 5}


def test_paths_and_links_stay_among_concepts(uri):
    with loaded(uri) as store:
        rejected = []
        rows = [{"report": "R:1", "source": "csv", "concept": c, "assertion": "present", "section": "FINDINGS", "count": 1}
                for c in ("T:heart", "T:isolated", "T:not-in-the-graph")]
        loads = store.link_mentions(rows, rejected)
        assert loads["MENTIONS"].added == 2
        assert rejected == [("report 'R:1' mentions 'T:not-in-the-graph'", "concept not in the graph database")]
        # Two concepts linked only through a report have no path between them.
        assert store.path("T:heart", "T:isolated") == []
        store.query("MATCH (r:Report {id: $id}) DETACH DELETE r", {"id": "R:1"}, write=True)


def test_credentials_never_appear_in_messages():
    with pytest.raises(ValueError) as error:
        open_store("http://neo4j:s3cret@db.example.org:7474")
    assert "s3cret" not in str(error.value) and "db.example.org" in str(error.value)
