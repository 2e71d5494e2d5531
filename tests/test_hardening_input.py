"""Bad input files, extraction slips and hostile queries (issue 13, part A): each test reproduces a case
that lost data, ran code or answered wrongly, and checks the behaviour that replaced it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from extract.reports import iter_reports
from extract.sections import SectionSplitter
from kg.problems import MalformedInputError, ProblemLog
from kg.sources import iu_xray

SPLITTER = SectionSplitter(["FINDINGS", "IMPRESSION"])


def write_csv(path: Path, rows: list[bytes]) -> Path:
    path.write_bytes(b"id,text\n" + b"".join(rows))
    return path


# Case 1: one bad CSV row costs that row alone, named by its real line


def test_a_non_utf8_byte_costs_its_row_alone_and_names_its_line(tmp_path):
    rows = [f"r{i},FINDINGS: report number {i} with some words to fill the read-ahead buffer.\n".encode() for i in range(2000)]
    rows[999] = b"r999,FINDINGS: caf\xe9 au lait spots.\n"  # Latin-1: row 1,000 starts on line 1,001
    problems = ProblemLog()
    reports = list(iter_reports(write_csv(tmp_path / "reports.csv", rows), problems, SPLITTER))
    assert len(reports) == 1999 and reports[-1].id == "r1999" and "r999" not in {r.id for r in reports}
    [problem] = problems.problems
    assert (problem.line, problem.kind) == (1001, "encoding")


def test_a_200_kb_report_is_a_valid_report(tmp_path):
    long_text = "FINDINGS: " + "no pneumothorax. " * 12_000  # about 200 KB, past csv's 131,072-character default
    rows = [f"r{i},short report {i}\n".encode() for i in range(1000)] + [f'long,"{long_text}"\n'.encode()]
    rows += [f"s{i},short report {i}\n".encode() for i in range(1000)]
    problems = ProblemLog()
    reports = list(iter_reports(write_csv(tmp_path / "reports.csv", rows), problems, SPLITTER))
    assert len(reports) == 2001 and not problems.problems
    assert next(r for r in reports if r.id == "long").text == long_text


def test_a_bom_before_the_csv_header_is_dropped(tmp_path):
    path = tmp_path / "reports.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\nr1,No pneumothorax.\n")
    [report] = iter_reports(path, ProblemLog(strict=True), SPLITTER)
    assert report.id == "r1"


# Case 2: a damaged, truncated, random or empty archive is an error that names it


@pytest.fixture(scope="module")
def archive_bytes() -> bytes:
    """A .tgz of 400 IU-style XML reports, big enough that damage in its middle leaves readable members on both sides."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for i in range(400):
            xml = (f'<?xml version="1.0"?><eCitation><uId id="CXR{i}"/><Abstract><AbstractText Label="FINDINGS">'
                   f'Report {i}: {" ".join(str(i * k) for k in range(60))}</AbstractText></Abstract></eCitation>').encode()
            info = tarfile.TarInfo(f"ecgen-radiology/{i}.xml")
            info.size = len(xml)
            archive.addfile(info, io.BytesIO(xml))
    return buffer.getvalue()


def damaged_versions(data: bytes) -> dict[str, bytes]:
    middle = len(data) // 2
    flipped = bytearray(data)
    flipped[middle : middle + 2000] = bytes(b ^ 0xFF for b in flipped[middle : middle + 2000])
    random_bytes = bytes((i * 7919 + 13) % 251 for i in range(5000))
    return {"flipped": bytes(flipped), "truncated": data[:middle], "random": random_bytes, "empty": b""}


def test_the_sound_archive_reads_whole(tmp_path, archive_bytes):
    path = tmp_path / "reports.tgz"
    path.write_bytes(archive_bytes)
    assert len(list(iu_xray.iter_reports(path, ProblemLog(strict=True)))) == 400


@pytest.mark.parametrize("damage", ["flipped", "truncated", "random", "empty"])
def test_a_damaged_archive_is_an_error_naming_it(tmp_path, archive_bytes, damage):
    path = tmp_path / f"{damage}.tgz"
    path.write_bytes(damaged_versions(archive_bytes)[damage])
    with pytest.raises(MalformedInputError, match=rf"{damage}\.tgz: damaged, truncated or not a tar archive"):
        list(iter_reports(path, ProblemLog()))


def test_a_bad_header_inside_a_plain_tar_is_not_taken_for_its_end(tmp_path, archive_bytes):
    import gzip

    data = bytearray(gzip.decompress(archive_bytes))
    data[512 * 400 : 512 * 400 + 512] = b"x" * 512  # a header block in the middle, not zeros: tarfile stops there silently
    path = tmp_path / "reports.tar"
    path.write_bytes(bytes(data))
    with pytest.raises(MalformedInputError, match=r"reports\.tar: .*data after the last readable header"):
        list(iter_reports(path, ProblemLog()))


def test_a_run_that_read_nothing_keeps_the_previous_output(open_kg_dir, medkg_home, tmp_path, monkeypatch, capsys):
    """`extract labels` goes through the same check (`medkg.api.extract._require_reports`); one command is tested
    because each costs seconds of index and lexicon loading."""
    from medkg.cli import main

    monkeypatch.setenv("MEDKG_HOME", str(medkg_home))
    (tmp_path / "empty.tgz").write_bytes(b"")
    write_csv(tmp_path / "header-only.csv", [])
    out = tmp_path / "previous.out"
    out.write_text("good output\n", encoding="utf-8")
    for source, says in (("empty.tgz", "empty.tgz: damaged, truncated or not a tar archive"), ("header-only.csv", "no report could be read")):
        assert main(["extract", "run", str(tmp_path / source), "--kg", str(open_kg_dir), "--out", str(out), "-q"]) == 2
        assert says in capsys.readouterr().err
        assert out.read_text(encoding="utf-8") == "good output\n"


# Case 3: a UTF-8 BOM at the start of an RRF or CSV file is dropped


def write_rrf_dir(directory: Path, bad_line: bool) -> Path:
    directory.mkdir()
    conso = ("C0032227|ENG|P|L1|PF|S1|Y|A1||||MSH|PT|D010996|Pleural effusion|0|N||\n"
             "C0032227|ENG|S|L2|VO|S2|N|A2||||MSH|SY|D010996|Effusion, pleural|0|N||\n"
             "C0032326|ENG|P|L3|PF|S3|Y|A3||||MSH|PT|D011030|Pneumothorax|0|N||\n")
    if bad_line:
        conso += "C9999999|ENG|too few columns|\n"  # sends the file through the line-by-line reader
    (directory / "MRCONSO.RRF").write_bytes(b"\xef\xbb\xbf" + conso.encode())
    (directory / "MRSTY.RRF").write_bytes(b"\xef\xbb\xbfC0032227|T047|||||\nC0032326|T047|||||\n")
    (directory / "MRREL.RRF").write_bytes(b"\xef\xbb\xbfC0032227|A1|CUI|RO|C0032326|A3|CUI|associated_with|R1||MSH|MSH|||N||\n")
    (directory / "MRDEF.RRF").write_bytes(b"\xef\xbb\xbfC0032227|A1|||MSH|Fluid in the pleural space.|N||\n")
    return directory


@pytest.mark.parametrize("bad_line", [False, True], ids=["arrow-reader", "line-reader"])
def test_a_bom_before_mrconso_gives_no_phantom_concept(tmp_path, bad_line):
    from kg.rrf import MRCONSO, read_table, table_path
    from kg.tables import read_tables

    rrf = write_rrf_dir(tmp_path / "rrf", bad_line)
    problems = ProblemLog()
    tables = read_tables(rrf, problems)
    assert sorted(tables.concepts["id"].to_pylist()) == ["C0032227", "C0032326"]
    assert tables.concepts.to_pylist()[0]["name"] == "Pleural effusion"
    assert tables.concepts.to_pylist()[0]["definition"] == "Fluid in the pleural space."
    assert [(r["head"], r["tail"]) for r in tables.relations.to_pylist()] == [("C0032326", "C0032227")]
    assert [p.line for p in problems.problems] == ([4] if bad_line else [])
    assert [row.CUI for _, row in read_table(table_path(rrf, "MRCONSO"), MRCONSO, ProblemLog())][0] == "C0032227"
