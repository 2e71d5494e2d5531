"""Source readers against the real vocabularies, and against small broken files of our own."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from kg.model import SourceConcept, SourceRelation
from kg.problems import ProblemLog
from kg.sources import chexpert, doid, iu_xray, mesh, radlex

Read = tuple[list[SourceConcept], list[SourceRelation], ProblemLog]


def need(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    assert path.exists(), f"missing test data: {path}"
    return path


def read_real(reader, path: Path) -> Read:
    problems = ProblemLog()
    concepts, relations = reader.read(path, problems)
    return concepts, relations, problems


def by_key(concepts: list[SourceConcept]) -> dict[str, SourceConcept]:
    index = {c.key: c for c in concepts}
    assert len(index) == len(concepts), "a key is emitted twice"
    return index


def triples(relations: list[SourceRelation]) -> dict[tuple[str, str, str], SourceRelation]:
    return {(r.head, r.relation, r.tail): r for r in relations}


def assert_closed(concepts: list[SourceConcept], relations: list[SourceRelation]) -> None:
    keys = {c.key for c in concepts}
    dangling = [r for r in relations if r.head not in keys or r.tail not in keys]
    assert not dangling, dangling[:5]


# --- RadLex -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def radlex_real(data_dir: Path) -> Read:
    return read_real(radlex, need(data_dir, "vocab/radlex/Radlex.csv"))


def test_radlex_counts_and_tree(radlex_real: Read) -> None:
    concepts, relations, problems = radlex_real
    index = by_key(concepts)
    assert 45_000 < len(concepts) <= 45_468
    assert {r.relation for r in relations} == {"is_a"}
    assert len(relations) > 44_000
    assert_closed(concepts, relations)
    # the export's known flaws: subtrees under parents it lacks, two names with a lost character
    assert set(problems.counts()) <= {"dangling parent", "encoding"}
    assert "RADLEX:RID15849" not in index  # "Obsolete Radlex Term" subtree is left out
    assert index["RADLEX:RID11121"].name == "intracoronal, dental"  # quoted name with a comma


def test_radlex_pleural_effusion_and_branch_types(radlex_real: Read) -> None:
    concepts, relations, _ = radlex_real
    index = by_key(concepts)
    effusion = index["RADLEX:RID34539"]
    assert effusion.name == "pleural effusion"
    assert effusion.semantic_types == ["T033"]
    assert ("RADLEX:RID34539", "is_a", "RADLEX:RID4872") in triples(relations)
    assert index["RADLEX:RID4872"].name == "effusion"
    assert ("RADLEX:RID10312", "is_a", "RADLEX:RID10311") in triples(relations)
    expected = {
        "RID1301": "T023",  # lung
        "RID10312": "T060",  # magnetic resonance imaging
        "RID5824": "T082",  # left (laterality)
        "RID5671": "T080",  # mild (status descriptor)
        "RID39050": "T184",  # symptom
    }
    assert {rid: index[f"RADLEX:{rid}"].semantic_types for rid in expected} == {
        rid: [tui] for rid, tui in expected.items()
    }


def test_radlex_malformed_rows(tmp_path: Path) -> None:
    csv_file = tmp_path / "Radlex.csv"
    csv_file.write_text(
        "imaging modality,RID10311,RID1\n"  # 1
        "only two,RID2\n"  # 2: column count
        '"name, with ""quotes""",RID7,RID10311\n'  # 3: fine
        "bad rid,XYZ,RID10311\n"  # 4: bad value
        "orphan,RID8,RID999\n"  # 5: dangling parent, concept kept
        "loop a,RID20,RID21\n"  # 6
        "loop b,RID21,RID20\n"  # 7
        "again,RID7,RID10311\n",  # 8: duplicate code
        encoding="utf-8",
    )
    problems = ProblemLog()
    concepts, relations = radlex.read(csv_file, problems)
    index = by_key(concepts)
    assert set(index) == {f"RADLEX:{rid}" for rid in ("RID10311", "RID7", "RID8", "RID20", "RID21")}
    assert index["RADLEX:RID7"].name == 'name, with "quotes"'
    assert index["RADLEX:RID7"].semantic_types == ["T060"]
    assert index["RADLEX:RID20"].semantic_types == []
    where = {(p.line, p.kind) for p in problems.problems}
    assert where == {(2, "column count"), (4, "bad value"), (5, "dangling parent"), (8, "duplicate code"), (6, "cycle")}
    assert ("RADLEX:RID7", "is_a", "RADLEX:RID10311") in triples(relations)
    assert all(str(csv_file) == p.file for p in problems.problems)


# --- MeSH -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh_real(data_dir: Path) -> Read:
    return read_real(mesh, need(data_dir, "vocab/mesh/2017MeshTree.txt"))


def test_mesh_counts(mesh_real: Read, data_dir: Path) -> None:
    concepts, relations, problems = mesh_real
    rows = need(data_dir, "vocab/mesh/2017MeshTree.txt").read_text(encoding="utf-8-sig").splitlines()[1:]
    kept_uis = {row.split("\t")[1] for row in rows if row[:1] in ("A", "C")}
    index = by_key(concepts)
    assert {c.code for c in concepts} == kept_uis
    assert 6_000 < len(concepts) < 7_000
    assert not problems.problems
    assert_closed(concepts, relations)
    assert len(triples(relations)) == len(relations)
    assert "MESH:D001169" in index  # Arthritis, Experimental: C and E; only C is read
    assert all(c.semantic_types for c in concepts)


def test_mesh_facts(mesh_real: Read) -> None:
    concepts, relations, _ = mesh_real
    index = by_key(concepts)
    edges = triples(relations)
    assert index["MESH:D010996"].name == "Pleural Effusion"
    assert index["MESH:D010996"].semantic_types == ["T047"]
    assert ("MESH:D010996", "is_a", "MESH:D010995") in edges  # C08.528.652 -> C08.528 Pleural Diseases
    assert index["MESH:D008168"].semantic_types == ["T023"]  # Lung, A04.411
    # Lung Neoplasms sits at C04.588.894.797.520, C08.381.540, C08.785.520: two parents, one edge each
    lung_neoplasm_parents = sorted(t for h, r, t in edges if h == "MESH:D008175")
    assert lung_neoplasm_parents == ["MESH:D008171", "MESH:D012142"]
    assert index["MESH:D008175"].semantic_types == ["T191", "T047"]


def test_mesh_malformed_rows(tmp_path: Path) -> None:
    tree = tmp_path / "tree.txt"
    tree.write_text(
        "\ufeffTree Number\tDesc Ui\tTerm\n"  # 1
        "C08\tD012140\tRespiratory Tract Diseases\n"  # 2
        "C08.528\tD010995\tPleural Diseases\n"  # 3
        "C08.528.652\tD010996\n"  # 4: column count
        "C8.x\tD1\tBad\n"  # 5: bad value
        "C09.100.200\tD000001\tNo parent\n"  # 6: dangling parent
        "D27\tD000002\tChemical\n",  # 7: branch not kept
        encoding="utf-8",
    )
    problems = ProblemLog()
    concepts, relations = mesh.read(tree, problems)
    assert {c.code for c in concepts} == {"D012140", "D010995", "D000001"}
    assert [(r.head, r.tail) for r in relations] == [("MESH:D010995", "MESH:D012140")]
    assert [(p.line, p.kind) for p in problems.problems] == [
        (4, "column count"),
        (5, "bad value"),
        (6, "dangling parent"),
    ]


# --- Disease Ontology -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doid_real(data_dir: Path) -> Read:
    return read_real(doid, need(data_dir, "vocab/doid/doid-2016-09-01.obo"))


def test_doid_counts(doid_real: Read) -> None:
    concepts, relations, problems = doid_real
    by_key(concepts)
    # 9,344 [Term] stanzas, 2,373 of them obsolete
    assert len(concepts) == 9_344 - 2_373
    assert not problems.problems
    assert_closed(concepts, relations)
    assert len(relations) > 6_000
    with_cui = sum(1 for c in concepts if c.cuis)
    assert with_cui / len(concepts) > 0.75
    assert all(cui.startswith("C") and len(cui) == 8 for c in concepts for cui in c.cuis)
    assert all(x.startswith("MESH:D") for c in concepts for x in c.xrefs)
    assert all(c.semantic_types == ["T047"] for c in concepts)


def test_doid_facts(doid_real: Read) -> None:
    concepts, relations, _ = doid_real
    index = by_key(concepts)
    angiosarcoma = index["DOID:0001816"]
    assert angiosarcoma.name == "angiosarcoma"
    assert angiosarcoma.synonyms == ["hemangiosarcoma"]
    assert angiosarcoma.cuis == ["C0018923", "C0854893"]
    assert angiosarcoma.xrefs == ["MESH:D006394"]
    assert angiosarcoma.definition and angiosarcoma.definition.startswith("A malignant Vascular tumor")
    assert ("DOID:0001816", "is_a", "DOID:1115") in triples(relations)
    assert '("comfort eating")' in (index["DOID:12294"].definition or "")  # \" unescaped
    assert "DOID:0050108" not in index  # obsolete


OBO = """format-version: 1.2
ontology: doid

[Term]
id: DOID:4
name: disease

[Term]
id: DOID:10
name: lung disease
def: "A disease of the \\"lung\\"." [url:http\\://example.org]
synonym: "pulmonary disease" EXACT []
synonym: "lung disorder" RELATED []
synonym: "asthma" NARROW []
synonym: "unterminated EXACT []
xref: UMLS_CUI:C0024115
xref: MESH:D008171
xref: MESH:C000123
this line has no colon
is_a: DOID:4 ! disease
is_a: DOID:99 ! missing

[Term]
id: DOID:11
name: old
is_obsolete: true

[Typedef]
id: part_of
name: part_of

[Term]
id: DOID:12
"""


def test_doid_malformed_stanzas(tmp_path: Path) -> None:
    obo = tmp_path / "doid.obo"
    obo.write_text(OBO, encoding="utf-8")
    problems = ProblemLog()
    concepts, relations = doid.read(obo, problems)
    index = by_key(concepts)
    assert set(index) == {"DOID:4", "DOID:10"}
    lung = index["DOID:10"]
    assert lung.definition == 'A disease of the "lung".'
    assert lung.synonyms == ["pulmonary disease", "lung disorder"]
    assert lung.cuis == ["C0024115"]
    assert lung.xrefs == ["MESH:D008171"]
    assert [(r.head, r.relation, r.tail) for r in relations] == [("DOID:10", "is_a", "DOID:4")]
    assert sorted((p.line, p.kind) for p in problems.problems) == [
        (15, "syntax"),  # unterminated synonym
        (19, "syntax"),  # no colon
        (21, "dangling parent"),  # is_a DOID:99
        (32, "incomplete stanza"),  # truncated last stanza: no name
    ]


# --- CheXpert ---------------------------------------------------------------------------------

CHEXPERT_NAMES = {
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other",
    "Pneumonia", "Pneumothorax", "Support Devices",
}  # fmt: skip


def test_chexpert_observations(data_dir: Path) -> None:
    concepts, relations, problems = read_real(chexpert, need(data_dir, "lexicons/chexpert-labeler/phrases"))
    index = by_key(concepts)
    assert {c.name for c in concepts} == CHEXPERT_NAMES
    assert relations == []
    assert not problems.problems
    effusion = index["CHEXPERT:pleural_effusion"]
    assert effusion.name == "Pleural Effusion"
    assert effusion.synonyms == ["pleural fluid", "effusion"]  # file has no trailing newline
    assert index["CHEXPERT:support_devices"].semantic_types == ["T074"]
    assert index["CHEXPERT:edema"].semantic_types == ["T033"]
    assert index["CHEXPERT:no_finding"].synonyms == []  # its list names findings that exclude it
    assert "mediastinum" in index["CHEXPERT:enlarged_cardiomediastinum"].synonyms  # "_mediastinum"
    assert all(s == s.strip() and s for c in concepts for s in c.synonyms)


def test_chexpert_unreadable_file(tmp_path: Path) -> None:
    mention = tmp_path / "phrases" / "mention"
    mention.mkdir(parents=True)
    (mention / "edema.txt").write_text("edema\n\n edema \nchf", encoding="utf-8")
    (mention / "broken.txt").write_bytes(b"\xff\xfe\x00bad")
    problems = ProblemLog()
    concepts, _ = chexpert.read(tmp_path / "phrases", problems)
    assert [(c.code, c.synonyms) for c in concepts] == [("edema", ["edema", "chf"])]
    assert [(Path(p.file).name, p.kind) for p in problems.problems] == [("broken.txt", "unreadable")]


# --- IU X-ray ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iu_path(data_dir: Path) -> Path:
    return need(data_dir, "iu-xray/NLMCXR_reports.tgz")


@pytest.fixture(scope="module")
def iu_reports(iu_path: Path) -> list[iu_xray.IUReport]:
    problems = ProblemLog()
    reports = list(iu_xray.iter_reports(iu_path, problems))
    assert not problems.problems
    return reports


@pytest.fixture(scope="module")
def iu_real(iu_path: Path) -> Read:
    return read_real(iu_xray, iu_path)


def test_iu_reports(iu_reports: list[iu_xray.IUReport]) -> None:
    assert len(iu_reports) == 3_955
    assert len({r.id for r in iu_reports}) == 3_955
    assert sum(len(r.images) for r in iu_reports) == 7_470
    cxr1 = next(r for r in iu_reports if r.id == "CXR1")
    assert set(cxr1.sections) == {"COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION"}
    assert cxr1.sections["INDICATION"] == "Positive TB test"
    assert cxr1.sections["FINDINGS"].startswith("The cardiac silhouette and mediastinum size")
    assert cxr1.sections["IMPRESSION"] == "Normal chest x-XXXX."
    assert cxr1.mesh_major == ["normal"]
    assert cxr1.images == ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]
    assert all(text for r in iu_reports for text in r.sections.values())
    assert sum("FINDINGS" not in r.sections for r in iu_reports) > 100  # empty <AbstractText> skipped
    assert sum(bool(r.mesh_auto) for r in iu_reports) > 2_000


def test_iu_concepts(iu_real: Read) -> None:
    concepts, relations, problems = iu_real
    index = by_key(concepts)
    assert not problems.problems
    assert_closed(concepts, relations)
    assert {"IUXRAY:normal", "IUXRAY:no_indexing"}.isdisjoint(index)
    expected = {
        "opacity": ("Opacity", ["T033"]),
        "lung": ("lung", ["T023"]),
        "upper_lobe": ("upper lobe", ["T082"]),
        "left": ("left", ["T082"]),
        "mild": ("mild", ["T080"]),
        "interstitial": ("interstitial", ["T080"]),
        "pleural_effusion": ("Pleural Effusion", ["T033"]),
        "aorta,_thoracic": ("aorta, thoracic", ["T023"]),
        "subcutaneous_emphysema": ("Subcutaneous Emphysema", ["T033"]),  # "Subcutaneous  Emphysema" too
    }
    assert {
        code: (index[f"IUXRAY:{code}"].name, index[f"IUXRAY:{code}"].semantic_types) for code in expected
    } == expected


def test_iu_relations(iu_real: Read, iu_reports: list[iu_xray.IUReport]) -> None:
    _, relations, _ = iu_real
    edges = triples(relations)
    assert len(edges) == len(relations)
    assert edges[("IUXRAY:opacity", "located_at", "IUXRAY:lung")].support > 10
    assert edges[("IUXRAY:hypoinflation", "located_at", "IUXRAY:lung")].support > 10  # "Lung/hypoinflation"
    assert ("IUXRAY:lung", "located_at", "IUXRAY:hypoinflation") not in edges
    co = [r for r in relations if r.relation == "co_occurs_with"]
    assert co and all(r.head < r.tail for r in co)
    assert ("IUXRAY:cardiomegaly", "co_occurs_with", "IUXRAY:pleural_effusion") in edges
    assert Counter(r.relation for r in relations).keys() == {"located_at", "has_modifier", "co_occurs_with"}
    assert all(r.source == "IUXRAY" and r.support and 0 < r.support <= len(iu_reports) for r in relations)
    # support counts reports, not annotations
    mild_cardiomegaly = sum(
        any(m.split("/")[0] == "Cardiomegaly" and "mild" in m.split("/")[1:] for m in r.mesh_major) for r in iu_reports
    )
    assert edges[("IUXRAY:cardiomegaly", "has_modifier", "IUXRAY:mild")].support == mild_cardiomegaly


REPORT_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/>
<MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">Heart is enlarged.</AbstractText>
<AbstractText Label="IMPRESSION"/>
</Abstract></Article></MedlineCitation>
<MeSH><major>Cardiomegaly/mild</major><major>Pleural Effusion/right/small</major>
<automatic>Cardiomegaly</automatic></MeSH>
<parentImage id="CXR{n}_1_IM-0001-1001"><figureId>F1</figureId></parentImage>
</eCitation>
"""


def test_iu_broken_member(tmp_path: Path) -> None:
    archive = tmp_path / "reports.tgz"
    members = {
        "ecgen-radiology/1.xml": REPORT_XML.format(n=1),
        "ecgen-radiology/2.xml": "<eCitation><uId id='CXR2'/>\n<MeSH><major>Opacity</major>\n",  # truncated
        "ecgen-radiology/3.xml": "<eCitation><MeSH><major>Opacity</major></MeSH></eCitation>",  # no uId
        "ecgen-radiology/4.xml": REPORT_XML.format(n=4),
    }
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    problems = ProblemLog()
    reports = list(iu_xray.iter_reports(archive, problems))
    assert [r.id for r in reports] == ["CXR1", "CXR4"]
    assert reports[0].sections == {"FINDINGS": "Heart is enlarged."}
    assert reports[0].mesh_major == ["Cardiomegaly/mild", "Pleural Effusion/right/small"]
    assert reports[0].mesh_auto == ["Cardiomegaly"]
    assert [(p.file, p.line, p.kind) for p in problems.problems] == [
        (str(archive / "ecgen-radiology/2.xml"), 3, "xml"),
        (str(archive / "ecgen-radiology/3.xml"), None, "missing id"),
    ]

    problems = ProblemLog()
    concepts, relations = iu_xray.read(archive, problems)
    assert len(problems) == 2
    assert {c.code for c in concepts} == {"cardiomegaly", "mild", "pleural_effusion", "right", "small"}
    assert {(r.head, r.relation, r.tail, r.support) for r in relations} == {
        ("IUXRAY:cardiomegaly", "has_modifier", "IUXRAY:mild", 2),
        ("IUXRAY:pleural_effusion", "has_modifier", "IUXRAY:right", 2),
        ("IUXRAY:pleural_effusion", "has_modifier", "IUXRAY:small", 2),
        ("IUXRAY:cardiomegaly", "co_occurs_with", "IUXRAY:pleural_effusion", 2),
    }

    folder = tmp_path / "ecgen-radiology"
    folder.mkdir()
    (folder / "1.xml").write_text(REPORT_XML.format(n=1), encoding="utf-8")
    (folder / "2.xml").write_text("<eCitation>", encoding="utf-8")
    problems = ProblemLog()
    assert [r.id for r in iu_xray.iter_reports(folder, problems)] == ["CXR1"]
    assert [(Path(p.file).name, p.kind) for p in problems.problems] == [("2.xml", "xml")]


def test_iu_annotation_parts() -> None:
    parse = iu_xray._parse_annotation
    assert parse("normal") == (None, [])
    assert parse("No Indexing") == (None, [])
    assert parse("Opacity/lung/base/left/mild") == (
        "Opacity",
        [("lung", "anatomy"), ("base", "location"), ("left", "laterality"), ("mild", "severity")],
    )
    assert parse("Diaphragm/right/elevated/mild") == (
        "elevated",
        [("Diaphragm", "anatomy"), ("right", "laterality"), ("mild", "severity")],
    )
    assert parse("Thoracic Vertebrae/scattered/degenerative") == (
        "degenerative",
        [("Thoracic Vertebrae", "anatomy"), ("scattered", "modifier")],
    )
    assert parse("Lung/azygos lobe") == (None, [("Lung", "anatomy"), ("azygos lobe", "anatomy")])
    assert parse(" Subcutaneous  Emphysema/right ") == ("Subcutaneous Emphysema", [("right", "laterality")])
