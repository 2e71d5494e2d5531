"""The open radiology graph built from ../shared/data, end to end through the embedded database."""

from __future__ import annotations

import json

from graphdb.uri import open_store
from kg.merge import merge
from kg.model import SourceConcept, SourceRelation


def test_graph_is_large_and_typed(open_kg):
    assert open_kg.num_concepts >= 40_000
    groups = {c.group for c in open_kg.concepts()}
    assert {"DISO", "ANAT", "PROC", "CONC"} <= groups
    relation_types = {r.type for r in open_kg.relations()}
    assert {"IS_A", "LOCATED_AT", "HAS_MODIFIER", "CO_OCCURS_WITH"} <= relation_types


def test_sources_merge_into_one_concept_keeping_every_code(open_kg):
    effusion = open_kg.concept("RADLEX:RID34539")
    assert effusion.name == "pleural effusion"
    assert {"MESH:D010996", "CHEXPERT:pleural_effusion", "RADLEX:RID34539"} <= set(effusion.sources)
    assert "pleural fluid" in effusion.synonyms  # a CheXpert mention phrase
    # Disease Ontology supplies UMLS CUIs, which then become the concept id.
    pneumonia = [c for c in open_kg.concepts() if c.name.lower() == "pneumonia"]
    assert len(pneumonia) == 1 and pneumonia[0].id.startswith("C") and any(s.startswith("DOID:") for s in pneumonia[0].sources)
    assert pneumonia[0].definition


def test_merge_rules_cui_xref_and_name():
    concepts = [
        SourceConcept("RADLEX", "RID1", "Pleural effusion"),
        SourceConcept("MESH", "D1", "Effusions, Pleural"),  # inverted MeSH heading, plural
        SourceConcept("DOID", "9", "hydrothorax", cuis=["C0000002"], xrefs=["MESH:D2"]),
        SourceConcept("MESH", "D2", "Hydrothorax"),
        SourceConcept("DOID", "10", "water on the chest", cuis=["C0000002"]),
        SourceConcept("RADLEX", "RID2", "pleura"),
    ]
    relations = [
        SourceRelation("RADLEX:RID1", "located_at", "RADLEX:RID2", "RADLEX"),
        SourceRelation("DOID:9", "is_a", "DOID:10", "DOID"),  # same concept after merging: a self-loop
        SourceRelation("RADLEX:RID1", "is_a", "RADLEX:RID404", "RADLEX"),
    ]
    result = merge(concepts, relations, ["RADLEX", "MESH", "DOID"])
    groups = {c.id: sorted(m.key for m in c.members) for c in result.concepts}
    assert groups == {
        "RADLEX:RID1": ["MESH:D1", "RADLEX:RID1"],
        "C0000002": ["DOID:10", "DOID:9", "MESH:D2"],
        "RADLEX:RID2": ["RADLEX:RID2"],
    }
    assert [(r.head, r.relation, r.tail) for r in result.relations] == [("RADLEX:RID1", "located_at", "RADLEX:RID2")]
    assert result.dropped_self_loops == 1 and len(result.dropped_dangling) == 1


def test_iu_relations_carry_report_support(open_kg):
    mined = [r for r in open_kg.relations() if r.source == "IUXRAY"]
    assert {r.type for r in mined} == {"LOCATED_AT", "HAS_MODIFIER", "CO_OCCURS_WITH"}
    located = [r for r in mined if r.type == "LOCATED_AT"]
    assert located and all(r.support >= 1 for r in located)
    opacity_lung = [r for r in located if open_kg.concept(r.head).name == "opacity" and open_kg.concept(r.tail).name == "lung"]
    assert opacity_lung and opacity_lung[0].support > 10


def test_lookup_ranks_pleural_effusion(open_graph_uri):
    with open_store(open_graph_uri) as store:
        for text in ("effusion", "effusions", "Pleural Effusion", "pleural efusion", "PLEURAL  effusions"):
            top = [hit.id for hit in store.lookup(text, limit=3)]
            assert "RADLEX:RID34539" in top, (text, top)
        assert store.lookup("pleural efusion", limit=1)[0].id == "RADLEX:RID34539"


def test_neighbours_of_pleural_effusion_include_the_pleura(open_graph_uri):
    with open_store(open_graph_uri) as store:
        found = store.neighbors("RADLEX:RID34539", depth=1, rel_types=["LOCATED_AT"])
    anatomy = {n.name.lower() for n in found if n.group == "ANAT"}
    assert anatomy & {"pleura", "pleural cavity"}, anatomy


def test_loading_twice_leaves_counts_unchanged(open_kg, open_graph_uri):
    with open_store(open_graph_uri, read_only=False) as store:
        before = store.counts()
        summary = store.load(open_kg, progress=False)
        after = store.counts()
    assert before == after
    assert before["Concept"] == open_kg.num_concepts
    assert sum(before[t] for t in before if t != "Concept") == open_kg.num_relations
    assert all(t.added == 0 and t.updated == 0 for t in summary.tables.values())


def test_pyg_export_keeps_every_edge(open_kg):
    data, ids, relations = open_kg.to_pyg()
    assert data.num_nodes == open_kg.num_concepts == len(ids)
    assert data.edge_index.shape == (2, open_kg.num_relations)
    assert int(data.edge_type.max()) == len(relations) - 1
    hetero, by_group = open_kg.to_hetero_pyg()
    assert hetero["DISO"].num_nodes == len(by_group["DISO"])
    assert ("DISO", "LOCATED_AT", "ANAT") in hetero.edge_types


def test_manifest_records_the_build(open_kg_dir):
    manifest = json.loads((open_kg_dir / "medkg.json").read_text())
    assert manifest["source"] == "open" and manifest["concepts"] >= 40_000
    assert manifest["rows"]["MRREL"] == manifest["relations"]


def test_names_of_symbols_only_do_not_merge_concepts():
    concepts = [SourceConcept("RADLEX", "RID1", "±"), SourceConcept("MESH", "D1", "—"), SourceConcept("DOID", "1", "β")]
    assert len(merge(concepts, [], ["RADLEX", "MESH", "DOID"]).concepts) == 3


def test_a_damaged_iu_archive_is_an_error_naming_it(data_dir, tmp_path):
    """Not a problem to count and go on: a build or extraction from half an archive would pass for the whole."""
    import pytest

    from kg.problems import MalformedInputError, ProblemLog
    from kg.sources.iu_xray import iter_reports

    archive = (data_dir / "iu-xray" / "NLMCXR_reports.tgz").read_bytes()
    damaged = tmp_path / "cut.tgz"
    damaged.write_bytes(archive[: len(archive) // 2])
    read = []
    with pytest.raises(MalformedInputError, match=r"cut\.tgz: damaged, truncated or not a tar archive"):
        read.extend(iter_reports(damaged, ProblemLog()))
    assert 1_000 < len(read) < 3_955  # it fails where the damage is, not before reading
