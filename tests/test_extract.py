"""Entity extraction on the open graph: the index, radiology phrasing, sections, the pipeline and its outputs."""

from __future__ import annotations

import csv
import json
import os
import time

import pytest

from extract.index import ensure_index
from extract.model import Report
from extract.pipeline import ExtractionConfig, extract_reports
from kg.problems import ProblemLog
from kg.semgroups import read_semgroups
from medkg.cli import main


def mentions_of(extractor, text: str) -> dict[str, tuple[str, str]]:
    """concept name (lower case) -> (assertion, matched text) for a one-section report."""
    report = Report("r", text, "csv")
    return {m.name.lower(): (m.assertion, m.text) for m in extractor.mentions(report)}


@pytest.mark.parametrize(("text", "name", "assertion"), [
    ("Heart size is enlarged.", "cardiomegaly", "present"),
    ("The cardiac silhouette is mildly enlarged.", "cardiomegaly", "present"),
    ("Stable cardiac enlargement.", "cardiomegaly", "present"),
    ("The heart is not significantly enlarged.", "cardiomegaly", "absent"),
    ("Heart size is normal.", "cardiomegaly", "absent"),
    ("Normal heart size.", "cardiomegaly", "absent"),
    ("No effusions.", "pleural effusion", "absent"),
    ("Small bilateral effusions.", "pleural effusion", "present"),
    ("Bibasilar airspace disease and bilateral pleural fluid.", "pleural effusion", "present"),
    ("Small pericardial effusion.", "pericardial effusion", "present"),
    ("Emphysematous changes.", "emphysema", "present"),
    ("There are no XXXX of a pleural effusion.", "pleural effusion", "absent"),
    ("Cannot exclude left lower lobe pneumonia.", "pneumonia", "uncertain"),
    ("No pneumothorax, but there is a small left effusion.", "pleural effusion", "present"),
])
def test_radiology_phrasing(extractor, text, name, assertion):
    found = mentions_of(extractor, text)
    assert name in found, found
    assert found[name][0] == assertion, found


def test_xxxx_is_not_a_word_and_misspellings_still_match(extractor):
    report = Report("r", "Normal chest x-XXXX. Small left pleural efusion. No pnuemothorax.", "csv")
    mentions = extractor.mentions(report)
    assert all("XXXX" not in m.text for m in mentions)
    by_name = {m.name.lower(): m for m in mentions}
    assert by_name["pleural effusion"].text == "pleural efusion" and 0.88 <= by_name["pleural effusion"].similarity < 1
    assert by_name["pneumothorax"].assertion == "absent"


def test_sections_are_recorded_and_indication_is_not_a_finding(extractor):
    text = "INDICATION: Evaluate for pneumonia.\n\nFINDINGS: The lungs are clear. No pneumothorax.\n\nIMPRESSION: No acute disease."
    mentions = extractor.mentions(Report("r", text, "csv"))
    sections = {m.name.lower(): m.section for m in mentions}
    assert sections["pneumonia"] == "INDICATION" and sections["pneumothorax"] == "FINDINGS"
    pneumonia = next(m for m in mentions if m.name.lower() == "pneumonia")
    assert not pneumonia.is_finding and pneumonia.assertion == "uncertain"
    for m in mentions:
        assert text[m.start:m.end] == m.text


def test_index_is_cached_until_the_rrf_files_change(open_kg_dir, tmp_path, data_dir):
    import shutil

    kg_dir = tmp_path / "kg"
    shutil.copytree(open_kg_dir, kg_dir)
    types = read_semgroups(data_dir / "vocab" / "umls" / "SemGroups.txt")
    first, built = ensure_index(kg_dir, tmp_path / "home", types, progress=False)
    assert built and len(first.terms) > 50_000
    _, built = ensure_index(kg_dir, tmp_path / "home", types, progress=False)
    assert not built
    with open(kg_dir / "MRSTY.RRF", "a", encoding="utf-8") as handle:
        handle.write("MEDKG:TEST|T033||Finding|||\n")
    mrconso = kg_dir / "MRCONSO.RRF"
    with open(mrconso, "a", encoding="utf-8") as handle:
        handle.write("MEDKG:TEST|ENG|P||PF||Y|A99999999||||MEDKG|PT|TEST|zebra sign of the lung|0|N||\n")
    os.utime(mrconso, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    rebuilt, built = ensure_index(kg_dir, tmp_path / "home", types, progress=False)
    assert built and rebuilt.resolve("zebra sign of the lung") == "MEDKG:TEST"
    with pytest.raises(FileNotFoundError, match="MRCONSO.RRF"):
        ensure_index(tmp_path / "nothing", tmp_path / "home", types, progress=False)


def test_pipeline_lists_unreadable_reports_and_goes_on(concept_index, data_dir, tmp_path):
    reports = tmp_path / "reports.csv"
    reports.write_text('id,text\nr1,"FINDINGS: No pleural effusion."\n,"no id here"\nr2,"IMPRESSION: Cardiomegaly."\nr1,"duplicate id"\n')
    problems = ProblemLog()
    config = ExtractionConfig(concept_index.directory, data_dir / "lexicons")
    results = list(extract_reports(reports, config, problems, workers=2, progress=False))
    assert [r.id for r, _ in results] == ["r1", "r2"]
    assert [(p.line, p.kind) for p in problems.problems] == [(3, "missing id"), (5, "duplicate id")]
    assert {m.name.lower(): m.assertion for m in results[1][1]} == {"cardiomegaly": "present"}


def test_run_writes_json_lines_and_links_idempotently(open_kg_dir, open_kg, medkg_home, data_dir, tmp_path, monkeypatch, capsys):
    from graphdb.embedded import EmbeddedStore

    monkeypatch.setenv("MEDKG_HOME", str(medkg_home))
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    graph = tmp_path / "graph"
    with EmbeddedStore(graph, read_only=False) as store:
        store.load(open_kg, progress=False)
    reports = tmp_path / "txt"
    (reports / "p10" / "p10000032").mkdir(parents=True)
    (reports / "p10" / "p10000032" / "s1.txt").write_text("FINDINGS: Small left pleural effusion. No pneumothorax.\n")
    (reports / "p10" / "p10000032" / "s2.txt").write_text("IMPRESSION: Heart size is enlarged. Possible pneumonia.\n")
    out = tmp_path / "mentions.jsonl"
    argv = ["extract", "run", str(reports), "--kg", str(open_kg_dir), "--out", str(out), "--link", "--graph", f"embedded://{graph}", "-q"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["s1", "s2"]
    keys = {"id", "name", "text", "start", "end", "section", "assertion", "trigger", "similarity", "semantic_types"}
    assert all(set(m) == keys for r in rows for m in r["mentions"])
    effusion = next(m for m in rows[0]["mentions"] if m["name"] == "pleural effusion")
    assert (effusion["assertion"], effusion["section"], effusion["trigger"]) == ("present", "FINDINGS", None)
    assert main(argv) == 0  # linking again changes nothing
    with EmbeddedStore(graph) as store:
        links = store.query("MATCH (r:Report)-[m:MENTIONS]->(c:Concept) RETURN r.id AS report, c.name AS concept, m.assertion AS a, m.count AS n ORDER BY report, concept")
    assert {"report": "s1", "concept": "pneumothorax", "a": "absent", "n": 1} in links
    assert {"report": "s2", "concept": "pneumonia", "a": "uncertain", "n": 1} in links
    assert len(links) == sum(len({(m["id"], m["assertion"], m["section"]) for m in r["mentions"]}) for r in rows)


def test_labels_csv_for_iu_reports(open_kg_dir, medkg_home, data_dir, tmp_path, monkeypatch):
    import tarfile

    monkeypatch.setenv("MEDKG_HOME", str(medkg_home))
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    xml_dir = tmp_path / "iu"
    with tarfile.open(data_dir / "iu-xray" / "NLMCXR_reports.tgz") as archive:
        members = [m for m in archive.getmembers() if m.name.endswith(("/1.xml", "/2.xml", "/3.xml"))]
        archive.extractall(xml_dir, members=members, filter="data")
    out = tmp_path / "labels.csv"
    assert main(["extract", "labels", str(xml_dir), "--kg", str(open_kg_dir), "--label-set", "chestxray14", "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["CXR1", "CXR2", "CXR3"]
    assert list(rows[0])[:3] == ["id", "Atelectasis", "Cardiomegaly"] and "Pleural_Thickening" in rows[0]
    assert set(v for r in rows for k, v in r.items() if k != "id") <= {"1", "0", "-1", ""}
    cxr1 = rows[0]  # "There is no pulmonary edema ... no evidence of pneumothorax"; impression "Normal chest"
    assert (cxr1["Edema"], cxr1["Pneumothorax"], cxr1["Effusion"], cxr1["normal"]) == ("0", "0", "0", "1")
    assert main(["extract", "labels", str(xml_dir), "--kg", str(open_kg_dir), "--label-set", "chexpert", "--out", str(tmp_path / "x.csv"), "-q"]) == 0
    assert "No Finding" in (tmp_path / "x.csv").read_text().splitlines()[0]


def test_assertions_command_scores_a_corpus(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("id\ttarget\tsentence\n1\tpneumothorax\tNo pneumothorax.\n2\tpneumonia\tCannot exclude pneumonia.\n"
                      "3\teffusion\tSmall left effusion.\n4\tmass\tno such target here\n")
    out = tmp_path / "out.tsv"
    assert main(["extract", "assertions", str(corpus), "--out", str(out)]) == 0
    assert out.read_text().splitlines() == ["id\tassertion", "1\tabsent", "2\tuncertain", "3\tpresent", "4\t"]


def test_chestxray14_labels_agree_with_iu_manual_mesh(extractor, concept_index, open_kg_dir, data_dir):
    """The done-when bar of entity extraction: micro-F1 >= 0.90 on positive findings over all IU reports."""
    from extract.labels import label_report, load_label_set
    from extract.reports import iter_reports
    from tests.iu_mesh import LABELS, mesh_labels, score

    archive = data_dir / "iu-xray" / "NLMCXR_reports.tgz"
    label_set = load_label_set("chestxray14", concept_index, open_kg_dir)
    predicted = {}
    for report in iter_reports(archive, ProblemLog()):
        values = label_report(report, extractor.mentions(report), label_set)
        predicted[report.id] = {label for label in LABELS if values[label] == "1"}
    truth = mesh_labels(archive)
    scores = score(truth, predicted)
    assert len(truth) == 3_860  # the 95 reports marked "No Indexing" were never annotated
    assert scores.micro.f1 >= 0.90, scores.micro
    for label in ("Atelectasis", "Cardiomegaly", "Effusion", "Emphysema", "Hernia"):
        assert scores.per_label[label].f1 >= 0.90, (label, scores.per_label[label])


def test_duplicate_txt_report_ids_are_reported(tmp_path, data_dir, monkeypatch):
    from extract.reports import iter_reports

    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s1.txt").write_text("FINDINGS: No effusion.")
    problems = ProblemLog()
    assert [r.id for r in iter_reports(tmp_path, problems)] == ["s1"]
    assert [(p.kind, p.file) for p in problems.problems] == [("duplicate id", str(tmp_path / "b" / "s1.txt"))]


def test_a_broken_lexicon_fails_once_with_workers(concept_index, tmp_path, data_dir):
    """Worker start-up errors must surface as one clear error, not as a pool restarting workers forever."""
    import shutil

    lexicons = tmp_path / "lexicons"
    shutil.copytree(data_dir / "lexicons", lexicons)
    (lexicons / "negex" / "negex_triggers.txt").unlink()
    reports = tmp_path / "r.csv"
    reports.write_text("id,text\nr1,No effusion.\n")
    config = ExtractionConfig(concept_index.directory, lexicons)
    with pytest.raises(FileNotFoundError, match="negex_triggers.txt"):
        list(extract_reports(reports, config, ProblemLog(), workers=2, progress=False))


def test_mentions_of_free_texts_from_the_python_api(open_kg_dir, medkg_home, data_dir, monkeypatch):
    from medkg.api.extract import mentions

    monkeypatch.setenv("MEDKG_HOME", str(medkg_home))
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    text = "Small left pleural effusion. No pneumothorax."
    first, second = mentions([text, "Heart size is normal."], open_kg_dir)
    assertions = {m.name: m.assertion for m in first}
    assert assertions["pleural effusion"] == "present" and assertions["pneumothorax"] == "absent"
    assert all(text[m.start:m.end] == m.text for m in first)
    assert {m.name.lower(): m.assertion for m in second}.get("cardiomegaly") == "absent"
