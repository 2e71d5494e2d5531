"""Report readers (IU X-ray, CSV, MIMIC-style txt folder), section splitting and sentence splitting."""

from __future__ import annotations

import re

import pytest

from extract.model import Section
from extract.reports import iter_reports
from extract.sections import SectionSplitter, canonical_name
from extract.sentences import split_sentences
from kg.problems import MalformedInputError, ProblemLog

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___F with cough and fever, ? pneumonia.
 
 COMPARISON:  None.
 
 FINDINGS: 
 
 PA and lateral views of the chest provided.  There is a 2.5 cm nodule in the
 right upper lobe, e.g. a granuloma vs. a neoplasm.  No pleural effusion or
 pneumothorax.  Heart size normal; mediastinum unremarkable.
 
 IMPRESSION: 
 
 1. Right upper lobe nodule.
 2. No pneumonia
"""


INLINE_TITLE = re.compile(r"[.!?][ \t]+(?:COMPARISON|INDICATION|FINDINGS|IMPRESSION)[ \t]*:")


@pytest.fixture(scope="module")
def splitter(data_dir) -> SectionSplitter:
    return SectionSplitter.from_lexicons(data_dir / "lexicons")


def bodies(text: str, sections: list[Section]) -> list[tuple[str, str]]:
    return [(s.name, text[s.start : s.end]) for s in sections]


def sentences(text: str, start: int = 0, end: int | None = None) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text, start, end)]


# IU X-ray


def test_iu_archive_streams_every_report_with_exact_section_offsets(data_dir, splitter):
    problems = ProblemLog(strict=True)
    reports = iter_reports(data_dir / "iu-xray" / "NLMCXR_reports.tgz", problems)
    count = empty = inline = 0
    ids = set()
    first = None
    for report in reports:
        count += 1
        ids.add(report.id)
        first = first or (report if report.id == "CXR1" else None)
        assert report.source == "iu-xray" and report.id.startswith("CXR")
        if not report.sections:
            empty += 1
            assert report.text == ""
            continue
        names = [s.name for s in report.sections]
        assert names == sorted(names, key=["COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION"].index)
        for section in report.sections:
            body = report.text[section.start : section.end]
            assert body and body == body.strip()
            assert report.text[: section.start].endswith(f"{section.name}: ")
        if INLINE_TITLE.search(report.text):  # a body that quotes another title inside a paragraph (CXR2415, CXR2800)
            inline += 1
        else:
            assert splitter.split(report.text) == report.sections  # the free-text splitter reads the joined text back
    assert count == len(ids) == 3955
    assert 0 < empty < 100  # a few reports carry no text at all; they are kept, not crashed on
    assert inline == 2
    assert len(problems) == 0

    assert first is not None
    assert first.text == (
        "COMPARISON: None.\n\n"
        "INDICATION: Positive TB test\n\n"
        "FINDINGS: The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema. "
        "There is no focal consolidation. There are no XXXX of a pleural effusion. There is no evidence of pneumothorax.\n\n"
        "IMPRESSION: Normal chest x-XXXX."
    )
    assert bodies(first.text, first.sections)[::3] == [("COMPARISON", "None."), ("IMPRESSION", "Normal chest x-XXXX.")]
    assert first.sections[1] == Section("INDICATION", 31, 47)
    findings = first.sections[2]
    assert sentences(first.text, findings.start, findings.end)[-2:] == [
        "There are no XXXX of a pleural effusion.",
        "There is no evidence of pneumothorax.",
    ]


def test_iu_folder_of_xml(tmp_path):
    xml = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR7"/><MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON"/>
<AbstractText Label="INDICATION">Chest pain</AbstractText>
<AbstractText Label="FINDINGS"/>
<AbstractText Label="IMPRESSION">No active disease.</AbstractText>
</Abstract></Article></MedlineCitation></eCitation>"""
    (tmp_path / "ecgen-radiology").mkdir()
    (tmp_path / "ecgen-radiology" / "7.xml").write_text(xml, encoding="utf-8")
    [report] = iter_reports(tmp_path, ProblemLog(strict=True))
    assert (report.id, report.source) == ("CXR7", "iu-xray")
    assert report.text == "INDICATION: Chest pain\n\nIMPRESSION: No active disease."
    assert bodies(report.text, report.sections) == [("INDICATION", "Chest pain"), ("IMPRESSION", "No active disease.")]


# MIMIC-style folder of txt files


def test_txt_folder_recursive_sorted_and_bad_bytes_skipped(tmp_path, splitter):
    files = tmp_path / "files"
    for relative, data in {
        "p10/p10000032/s50414267.txt": MIMIC_REPORT.encode(),
        "p10/p10000032/s53189527.txt": b" FINDINGS: Lungs are clear.\n\n IMPRESSION: No acute process.\n",
        "p11/p11000011/s51029426.txt": b" FINDINGS: caf\xe9 au lait\n IMPRESSION: Normal.\n",  # Latin-1, not UTF-8
    }.items():
        (files / relative).parent.mkdir(parents=True, exist_ok=True)
        (files / relative).write_bytes(data)
    (files / "p10" / "notes.csv").write_text("ignored", encoding="utf-8")

    problems = ProblemLog()
    reports = list(iter_reports(tmp_path, problems, splitter))
    assert [(r.id, r.source) for r in reports] == [("s50414267", "txt"), ("s53189527", "txt")]
    assert reports[0].text == MIMIC_REPORT
    assert bodies(reports[1].text, reports[1].sections) == [
        ("FINDINGS", "Lungs are clear."),
        ("IMPRESSION", "No acute process."),
    ]

    [problem] = problems.problems
    assert problem.file.endswith("s51029426.txt") and problem.line == 1 and problem.kind == "encoding"
    with pytest.raises(MalformedInputError, match="s51029426.txt"):
        list(iter_reports(tmp_path, ProblemLog(strict=True), splitter))


# CSV


def test_csv_quoted_multiline_empty_and_duplicate_ids(tmp_path, splitter):
    path = tmp_path / "reports.csv"
    path.write_text(
        "ID,subject,Text\n"  # line 1
        'r1,7,"FINDINGS: Heart size normal.\n\nIMPRESSION: No acute process."\n'  # lines 2-4
        ",8,IMPRESSION: orphan\n"  # line 5: no id
        'r2,9,"No pneumothorax, ""stable"" effusion."\n'  # line 6
        'r1,10,"IMPRESSION: again\nand again"\n'  # lines 7-8: duplicate id
        "r3,11,\n"  # line 9: no text
        "r4,12,FINDINGS: Clear lungs.\n",  # line 10
        encoding="utf-8",
    )
    problems = ProblemLog()
    reports = list(iter_reports(path, problems, splitter))
    assert [(r.id, r.source) for r in reports] == [("r1", "csv"), ("r2", "csv"), ("r4", "csv")]
    assert reports[0].text == "FINDINGS: Heart size normal.\n\nIMPRESSION: No acute process."
    assert bodies(reports[0].text, reports[0].sections) == [
        ("FINDINGS", "Heart size normal."),
        ("IMPRESSION", "No acute process."),
    ]
    assert bodies(reports[1].text, reports[1].sections) == [("OTHER", 'No pneumothorax, "stable" effusion.')]
    assert [(p.line, p.kind) for p in problems.problems] == [(5, "missing id"), (7, "duplicate id"), (9, "empty report")]
    assert all(p.file == str(path) for p in problems.problems)


def test_csv_without_id_and_text_columns(tmp_path, splitter):
    path = tmp_path / "reports.csv"
    path.write_text("study,report\n1,No pneumothorax.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'id' and a 'text' column"):
        list(iter_reports(path, ProblemLog(), splitter))


def test_unrecognised_and_missing_inputs(tmp_path, splitter):
    (tmp_path / "report.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"report\.json.*IU X-ray archive.*\.csv.*\.txt"):
        iter_reports(tmp_path / "report.json", ProblemLog(), splitter)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        iter_reports(tmp_path / "empty", ProblemLog(), splitter)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        iter_reports(tmp_path / "nowhere", ProblemLog(), splitter)


# Sections


def test_mimic_style_sections(splitter):
    sections = splitter.split(MIMIC_REPORT)
    assert bodies(MIMIC_REPORT, sections) == [
        ("TECHNIQUE", "CHEST (PA AND LAT)"),
        ("INDICATION", "___F with cough and fever, ? pneumonia."),
        ("COMPARISON", "None."),
        (
            "FINDINGS",
            "PA and lateral views of the chest provided.  There is a 2.5 cm nodule in the\n"
            " right upper lobe, e.g. a granuloma vs. a neoplasm.  No pleural effusion or\n"
            " pneumothorax.  Heart size normal; mediastinum unremarkable.",
        ),
        ("IMPRESSION", "1. Right upper lobe nodule.\n 2. No pneumonia"),
    ]
    # Between sections lie only titles and whitespace.
    gaps = [MIMIC_REPORT[a.end : b.start] for a, b in zip(sections, sections[1:])]
    assert [gap.split() for gap in gaps] == [["INDICATION:"], ["COMPARISON:"], ["FINDINGS:"], ["IMPRESSION:"]]


def test_sections_other_titles_and_no_titles(splitter):
    text = (
        "Preliminary note.\n"
        "WET READ: ___ 2:14 PM  No acute process.\n"
        "                                 FINAL REPORT\n"
        " CLINICAL HISTORY: Fever.\n"
        " REASON FOR EXAMINATION: eval for pna\n"
        " PA AND LATERAL VIEWS OF THE CHEST: Heart size normal.\n"
        " Findings: mentioned in prose, FINDINGS: not a title mid-line.\n"
        " IMPRESION: Typo title.\n"
        " NOTIFICATION: Dr. ___ was called.\n"
    )
    assert bodies(text, splitter.split(text)) == [
        ("OTHER", "Preliminary note."),
        ("OTHER", "___ 2:14 PM  No acute process."),
        ("HISTORY", "Fever."),
        ("INDICATION", "eval for pna"),
        ("FINDINGS", "Heart size normal."),
        ("FINDINGS", "mentioned in prose, FINDINGS: not a title mid-line."),
        ("IMPRESSION", "Typo title."),
        ("OTHER", "Dr. ___ was called."),
    ]
    assert splitter.split("No acute cardiopulmonary process.") == [Section("OTHER", 0, 33)]
    assert splitter.split("  \n ") == []
    assert splitter.split("FINDINGS:\nIMPRESSION: Normal.") == [Section("IMPRESSION", 22, 29)]


def test_canonical_names():
    assert canonical_name("EXAMINATION:") == "TECHNIQUE"
    assert canonical_name("REASON FOR EXAMINATION") == "INDICATION"
    assert canonical_name("CLINICAL INDICATION") == "INDICATION"
    assert canonical_name("Clinical History:") == "HISTORY"
    assert canonical_name("CONCLUSION") == "IMPRESSION"
    assert canonical_name("COMPARISION") == "COMPARISON"
    assert canonical_name("FINDIGNS") == "FINDINGS"
    assert canonical_name("MEDICATIONS PRIOR TO ADMISSION") == "OTHER"
    assert canonical_name("NOTIFICATION") == "OTHER"


# Sentences


def test_sentences_keep_decimals_abbreviations_and_the_iu_mask():
    text = (
        "There is a 2.5 cm nodule, e.g. a granuloma vs. neoplasm, approx. 3.1 mm deep. "
        "Dr. XXXX was paged at 3 p.m. today. Normal chest x-XXXX. No effusion"
    )
    assert sentences(text) == [
        "There is a 2.5 cm nodule, e.g. a granuloma vs. neoplasm, approx. 3.1 mm deep.",
        "Dr. XXXX was paged at 3 p.m. today.",
        "Normal chest x-XXXX.",
        "No effusion",
    ]


def test_sentences_numbered_lists_blank_lines_and_punctuation():
    assert sentences("1. No acute disease. 2. Stable cardiomegaly.") == ["1. No acute disease.", "2. Stable cardiomegaly."]
    assert sentences("1. Low lung volumes 2. No pneumonia") == ["1. Low lung volumes", "2. No pneumonia"]
    assert sentences(" 1. Right upper lobe nodule\n 2. No pneumonia\n") == ["1. Right upper lobe nodule", "2. No pneumonia"]
    assert sentences("Heart size normal\n\nLungs are\nclear") == ["Heart size normal", "Lungs are\nclear"]
    assert sentences("No effusion.. Clear lungs.There is no pneumothorax; heart normal. .") == [
        "No effusion..",
        "Clear lungs.",
        "There is no pneumothorax;",
        "heart normal.",
    ]
    assert sentences("Pneumonia? Cough ? pneumonia. Stable (see prior.) Done!") == [
        "Pneumonia?",
        "Cough ? pneumonia.",
        "Stable (see prior.)",
        "Done!",
    ]
    assert sentences("") == [] and sentences(" \n\n . ") == []


def test_sentence_offsets_index_the_whole_text():
    text = "FINDINGS: No pneumothorax. No effusion.\n\nIMPRESSION: No pneumothorax."
    body = text.index("No pneumothorax.", 20)
    assert split_sentences(text, 10, 39) == [(10, 26), (27, 39)]
    assert split_sentences(text, body) == [(body, len(text))]
    assert split_sentences(text, 10, 26) == split_sentences(text, 10, 26)  # a cached split, shifted the same
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "FINDINGS: No pneumothorax.",
        "No effusion.",
        "IMPRESSION: No pneumothorax.",
    ]
