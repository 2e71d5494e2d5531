"""The RRF reader, writer and UMLS subset on a hand-made META directory with malformed lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kg.graph import read_graph
from kg.problems import MalformedInputError, ProblemLog
from kg.relations import rrf_from_edge
from kg.rrf import MRCONSO, MRREL, RRFWriter, read_table
from kg.semgroups import read_semgroups
from kg.tables import read_tables
from kg.umls import UMLSFilter, subset_umls

META = Path(__file__).parent / "fixtures" / "umls-mini"


@pytest.fixture(scope="module")
def types(data_dir):
    return read_semgroups(data_dir / "vocab" / "umls" / "SemGroups.txt")


def test_reader_reports_bad_lines_with_file_and_line_and_keeps_good_ones():
    problems = ProblemLog()
    rows = list(read_table(META / "MRCONSO.RRF", MRCONSO, problems))
    assert [n for n, _ in rows] == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert rows[0][1].STR == "Pleural Effusion" and rows[0][1].SAB == "MSH"
    kinds = {(p.line, p.kind) for p in problems.problems}
    assert kinds == {(9, "column count"), (11, "encoding")}
    assert all(p.file.endswith("MRCONSO.RRF") for p in problems.problems)
    assert "1 column count" in problems.summary() and "1 encoding" in problems.summary()


def test_strict_mode_stops_at_the_first_bad_line():
    with pytest.raises(MalformedInputError, match=r"MRCONSO.RRF:9: column count"):
        list(read_table(META / "MRCONSO.RRF", MRCONSO, ProblemLog(strict=True)))


def test_relationship_direction_round_trips(tmp_path):
    edges = [("a", "IS_A", "b", "isa"), ("a", "LOCATED_AT", "b", "located_at"), ("b", "RELATED_TO", "c", "has_finding_site")]
    rows = [rrf_from_edge(*edge) for edge in edges]
    # UMLS states hierarchy both ways; a PAR row for the same pair folds into the CHD edge.
    rows.append(("a", "PAR", "b", "inverse_isa"))
    with RRFWriter(tmp_path / "kg") as writer:
        for cui in "abc":
            writer.write(MRCONSO(cui, "ENG", "P", "", "PF", "", "Y", f"A{cui}", "", "", "", "X", "PT", cui, f"term {cui}", "0", "N", ""))
        for number, (cui1, rel, cui2, rela) in enumerate(rows):
            writer.write(MRREL(cui1, "", "CUI", rel, cui2, "", "CUI", rela, f"R{number}", "", "X", "X", "", "", "N", ""))
        writer.commit()
    relations = read_tables(tmp_path / "kg", ProblemLog()).relations
    assert sorted(zip(*(relations[c].to_pylist() for c in ("head", "type", "tail", "rela")))) == sorted(edges)


def test_subset_filters_language_suppression_and_reports_dangling_relations(tmp_path, types):
    problems = ProblemLog()
    summary = subset_umls(META, tmp_path / "sub", UMLSFilter(), types, problems, progress=False)
    conso = [row for _, row in read_table(tmp_path / "sub" / "MRCONSO.RRF", MRCONSO, ProblemLog())]
    strings = {r.STR for r in conso}
    assert "Epanchement pleural" not in strings  # French
    assert "Pleural Disorder (obsolete)" not in strings  # SUPPRESS=O
    assert {"Pleural Effusion", "Effusion of pleura", "Heart"} <= strings
    assert summary.concepts == 5
    rels = [row for _, row in read_table(tmp_path / "sub" / "MRREL.RRF", MRREL, ProblemLog())]
    assert {r.RUI for r in rels} == {"R0001", "R0002", "R0003", "R0004"}  # SIB skipped, dangling and bad lines out
    dangling = [p for p in problems.problems if p.kind == "dangling relation"]
    assert len(dangling) == 1 and dangling[0].line == 6 and "C9999999" in dangling[0].message
    assert any(p.kind == "column count" and p.line == 7 and p.file.endswith("MRREL.RRF") for p in problems.problems)


def test_subset_by_semantic_group_and_source(tmp_path, types):
    problems = ProblemLog()
    subset_umls(META, tmp_path / "anat", UMLSFilter(semantic_groups={"ANAT"}), types, problems, progress=False)
    kg = read_graph(tmp_path / "anat", ProblemLog(), types)
    assert {c.id for c in kg.concepts()} == {"C0032225", "C0018787"}
    assert kg.num_relations == 0  # every relation touches a disorder, which the filter left out

    subset_umls(META, tmp_path / "snomed", UMLSFilter(sabs={"SNOMEDCT_US"}), types, ProblemLog(), progress=False)
    kg = read_graph(tmp_path / "snomed", ProblemLog(), types)
    assert {c.name for c in kg.concepts()} == {"Effusion of pleura", "Enlarged heart"}


def test_unknown_semantic_group_is_a_clear_error(tmp_path, types):
    with pytest.raises(ValueError, match="unknown semantic group.*DISEASES.*choose from"):
        subset_umls(META, tmp_path / "x", UMLSFilter(semantic_groups={"DISEASES"}), types, ProblemLog(), progress=False)


def test_read_graph_types_concepts_and_relations(types):
    problems = ProblemLog()
    kg = read_graph(META, problems, types)
    effusion = kg.concept("C0032227")
    assert effusion.name == "Pleural Effusion"
    assert "Effusion of pleura" in effusion.synonyms and effusion.name not in effusion.synonyms
    assert effusion.semantic_types == ["T047"] and effusion.group == "DISO"
    assert effusion.definition == "Presence of fluid in the pleural cavity."
    assert set(effusion.sources) >= {"MSH:D010996", "SNOMEDCT_US:60046008"}
    edges = {(r.head, r.type, r.tail, r.rela) for r in kg.relations()}
    # The CHD and PAR rows are one IS_A edge; has_finding_site reads CUI2 -> CUI1.
    assert ("C0032227", "IS_A", "C0032226", "isa") in edges
    assert ("C0032227", "RELATED_TO", "C0032225", "has_finding_site") in edges
    assert sum(1 for e in edges if e[1] == "IS_A") == 1
    assert any(p.kind == "dangling relation" and p.line == 6 for p in problems.problems)


def test_missing_tables_name_the_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MRCONSO.RRF"):
        read_graph(tmp_path, ProblemLog())


def test_writer_is_atomic_and_keeps_the_previous_build_on_failure(tmp_path):
    out = tmp_path / "kg"
    with RRFWriter(out) as writer:
        writer.write(MRCONSO("C1", "ENG", "P", "", "PF", "", "Y", "A1", "", "", "", "X", "PT", "1", "first|build", "0", "N", ""))
        writer.commit()
    assert (out / "MRCONSO.RRF").read_text() == "C1|ENG|P||PF||Y|A1||||X|PT|1|first/build|0|N||\n"
    with pytest.raises(RuntimeError):
        with RRFWriter(out) as writer:
            writer.write(MRCONSO("C2", "ENG", "P", "", "PF", "", "Y", "A2", "", "", "", "X", "PT", "2", "second", "0", "N", ""))
            raise RuntimeError("build failed half way")
    assert "first/build" in (out / "MRCONSO.RRF").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["kg"]  # no temporary directories left behind


def test_a_build_never_replaces_a_directory_it_did_not_write(tmp_path, types):
    precious = tmp_path / "umls"
    (precious / "META").mkdir(parents=True)
    (precious / "META" / "MRCONSO.RRF").write_text("licensed")
    with pytest.raises(FileExistsError, match="not a medkg build"):
        subset_umls(META, precious, UMLSFilter(), types, ProblemLog(), progress=False)
    assert (precious / "META" / "MRCONSO.RRF").read_text() == "licensed"
    out = tmp_path / "subset"
    subset_umls(META, out, UMLSFilter(), types, ProblemLog(), progress=False)
    subset_umls(META, out, UMLSFilter(sabs={"MSH"}), types, ProblemLog(), progress=False)  # a medkg build is replaced
    assert json.loads((out / "medkg.json").read_text())["source"] == "umls"
