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
    assert next(row.CUI for _, row in read_table(table_path(rrf, "MRCONSO"), MRCONSO, ProblemLog())) == "C0032227"

    from graphdb.embedded import EmbeddedStore

    plain = tmp_path / "plain"
    plain.mkdir()
    for file in rrf.iterdir():  # the same tables without the BOMs: a good database to load over
        (plain / file.name).write_bytes(file.read_bytes().removeprefix(b"\xef\xbb\xbf"))
    with EmbeddedStore(tmp_path / "graph", read_only=False) as store:
        store.load(read_tables(plain, ProblemLog()))
        again = store.load(read_tables(rrf, ProblemLog())).tables["Concept"]
        assert (again.added, again.updated, again.unchanged) == (0, 0, 2)


def test_a_bom_before_semgroups_or_a_mentions_file_is_dropped(tmp_path):
    from extract.io import read_reports
    from kg.semgroups import read_semgroups

    groups = tmp_path / "SemGroups.txt"
    groups.write_bytes(b"\xef\xbb\xbfDISO|Disorders|T047|Disease or Syndrome\n")
    assert list(read_semgroups(groups)) == ["T047"] and read_semgroups(groups)["T047"].group == "DISO"
    mentions = tmp_path / "mentions.jsonl"
    mentions.write_bytes(b'\xef\xbb\xbf{"id": "r1", "mentions": []}\n{"id": "r2", "mentions": []}\n')
    problems = ProblemLog()
    assert [report.id for report, _ in read_reports(mentions, problems)] == ["r1", "r2"] and not problems.problems


# Case 6: the look-up cache beside the database is data, validated, and rebuilt when it is not right


@pytest.fixture
def small_db(tmp_path) -> Path:
    from graphdb.embedded import EmbeddedStore
    from tests.graphs import small_graph

    path = tmp_path / "graph"
    with EmbeddedStore(path, read_only=False) as store:
        store.load(small_graph(), progress=False)
    return path


class RunsCode:
    """Unpickling this creates the file it names: what a crafted cache did through `kg lookup`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_truncated_crafted_or_foreign_name_cache_is_rebuilt_and_never_run(small_db, tmp_path):
    import pickle

    from graphdb.embedded import EmbeddedStore
    from kg.lookup import NameIndex

    with EmbeddedStore(small_db) as store:
        expected = store.lookup("pleural efusion", 3)
    assert expected[0].id == "T:effusion"
    cache = small_db.with_name("graph.names.arrow")
    good = cache.read_bytes()
    marker = tmp_path / "code-ran"
    crafted = pickle.dumps(RunsCode(marker))
    foreign = tmp_path / "foreign.arrow"
    NameIndex([("T:x", "pleural efusion", [], 9)]).save(foreign, stamp="another database")
    for content in (good[: len(good) // 2], crafted, b"", foreign.read_bytes()):
        cache.write_bytes(content)
        small_db.with_name("graph.names.pkl").write_bytes(crafted)  # where the pickle used to be read from
        with EmbeddedStore(small_db) as store:
            assert store.lookup("pleural efusion", 3) == expected
        assert not marker.exists()
        assert cache.read_bytes()[:6] == b"ARROW1"  # rebuilt
    with EmbeddedStore(small_db) as store:  # and the rebuilt cache is used as it is
        stamp = cache.read_bytes()
        assert store.lookup("pleural efusion", 3) == expected and cache.read_bytes() == stamp


def test_a_damaged_or_crafted_concept_index_cache_is_rebuilt_and_never_run(tmp_path):
    """The extraction index's dictionary under $MEDKG_HOME was a pickle too: now JSON, rebuilt when it does not read back."""
    import pickle

    from extract.index import TERMS_FILE, ensure_index
    from kg.semgroups import SemanticType

    rrf = write_rrf_dir(tmp_path / "rrf", bad_line=False)
    types = {"T047": SemanticType("T047", "Disease or Syndrome", "DISO", "Disorders")}
    index, built = ensure_index(rrf, tmp_path / "home", types, progress=False)
    assert built and index.resolve("pleural effusions") == "C0032227"
    marker = tmp_path / "code-ran"
    terms = index.directory / TERMS_FILE
    for damage in (terms.read_bytes()[:40], b"[]", b'{"terms": {"pneumothorax": ["C404"]}, "concepts": {}}'):
        terms.write_bytes(damage)
        (index.directory / "terms.pkl").write_bytes(pickle.dumps(RunsCode(marker)))  # where the pickle used to be
        again, built = ensure_index(rrf, tmp_path / "home", types, progress=False)
        assert built and again.resolve("pleural effusions") == "C0032227" and again.resolve("pneumothorax") == "C0032326"
        assert not marker.exists()
    assert not ensure_index(rrf, tmp_path / "home", types, progress=False)[1]  # and the rebuilt cache is used


# Case 7: file access is refused unless allowed; names spelt like keywords are not clauses


@pytest.mark.parametrize("cypher, writes, files", [
    ("RETURN 1 AS Set", None, None),
    ("MATCH (c:Concept) RETURN c.set AS load, {set: 1, copy: 2} AS m, $create AS p", None, None),
    ("MATCH (n:Load)-[:SET]->(m) RETURN n", None, None),
    ("RETURN 'LOAD FROM \"/etc/passwd\"' AS s // LOAD FROM '/etc/passwd'", None, None),
    ("LOAD FROM '/etc/passwd' (header=false) RETURN *", None, "LOAD"),
    ("load csv from 'file:///etc/passwd' as line return line", None, "LOAD"),
    ("RETURN 'it\\'s' AS s LOAD FROM '/etc/passwd' RETURN *", None, "LOAD"),  # an escaped quote ends no string
    ("RETURN `we``ird` AS s LOAD FROM '/etc/passwd' RETURN *", None, "LOAD"),  # nor a doubled backtick a name
    ("RETURN 1 /* LOAD */ LOAD/**/FROM '/etc/passwd' RETURN *", None, "LOAD"),
    ("COPY (MATCH (c:Concept) RETURN c.id) TO '/tmp/out.csv'", "COPY", "COPY"),
    ("ATTACH '/tmp/other.db' AS other (dbtype duckdb)", "ATTACH", "ATTACH"),
    ("CALL apoc.load.json('file:///etc/passwd')", None, "apoc.load.json"),
    ("CALL apoc.cypher.run('LOAD CSV FROM $u AS l RETURN l', {})", "apoc.cypher.run", None),
    ("MATCH (n) DETACH DELETE n", "DETACH", None),
])
def test_the_guard_reads_clauses_not_words(cypher, writes, files):
    from graphdb.readonly import file_clause, write_clause

    assert (write_clause(cypher), file_clause(cypher)) == (writes, files)


def test_a_read_only_query_cannot_read_files_unless_allowed(small_db, tmp_path, capsys):
    from graphdb.embedded import EmbeddedStore
    from graphdb.readonly import FileAccessError
    from medkg.cli import main

    secret = tmp_path / "secret.csv"
    secret.write_text("name\nthe secret\n", encoding="utf-8")
    load = f"LOAD FROM '{secret}' (header=true) RETURN name"
    with EmbeddedStore(small_db) as store:
        with pytest.raises(FileAccessError, match=r"reads or writes files \(LOAD\)"):
            store.query(load)
        assert store.query(load, allow_files=True) == [{"name": "the secret"}]
        assert store.query("MATCH (c:Concept {id: 'T:heart'}) RETURN c.id AS Set") == [{"Set": "T:heart"}]
    uri = f"embedded://{small_db}"
    assert main(["kg", "query", load, "--graph", uri]) == 3
    assert "--allow-files" in capsys.readouterr().err
    assert main(["kg", "query", load, "--graph", uri, "--allow-files", "--json"]) == 0
    assert "the secret" in capsys.readouterr().out


# Case 9: look-up ranking does not depend on the limit; ids in any case; a limit below 1 is refused


def test_lookup_ranking_does_not_depend_on_the_limit():
    from kg.lookup import NameIndex

    # Twelve names hold the query whole (WRatio 90 by partial match) but are far from it as whole names;
    # the closest whole name scores lower by WRatio alone (86.7), so a cut by WRatio first (at limit * 5) lost it.
    decoys = [f"pleural efusion of the {w} region" for w in
              ("left", "right", "upper", "lower", "apical", "basal", "middle", "anterior", "posterior", "lateral", "medial", "central")]
    index = NameIndex([(f"D{i}", name, [], 1) for i, name in enumerate(decoys)] + [("X", "plerual efusoin", [], 1)])
    full = index.search("pleural efusion", 20)
    assert full[0].id == "X"
    assert [index.search("pleural efusion", k) for k in range(1, 14)] == [full[:k] for k in range(1, 14)]


def test_lookup_by_id_in_any_case_and_limits_below_one(small_db):
    from graphdb.embedded import EmbeddedStore
    from kg.errors import InputError

    with EmbeddedStore(small_db) as store:
        for text in ("T:effusion", "t:EFFUSION"):
            first = store.lookup(text, 3)[0]
            assert (first.id, first.score) == ("T:effusion", 100.0)
        assert len(store.neighbors("T:effusion", limit=1)) == 1
        for limit in (0, -1):
            with pytest.raises(InputError, match="limit must be at least 1"):
                store.neighbors("T:effusion", limit=limit)
            with pytest.raises(InputError, match="limit must be at least 1"):
                store.lookup("effusion", limit)


# Extraction friction: stock normal statements name no finding; an inline IMPRESSION starts that section


def mentions_of(extractor, text: str) -> list[tuple[str, str, str, str]]:
    from extract.model import Report

    return [(m.name, m.text, m.section, m.assertion) for m in extractor.mentions(Report("r", text, "text"))]


@pytest.mark.parametrize("text", ["No acute cardiopulmonary disease.", "No acute cardiopulmonary process.",
                                  "IMPRESSION: No acute cardiopulmonary disease."])
def test_no_acute_cardiopulmonary_disease_names_no_finding(extractor, text):
    assert mentions_of(extractor, text) == []  # it was cor pulmonale (a DOID synonym), and "process" a concept


def test_cor_pulmonale_by_name_is_still_found(extractor):
    assert mentions_of(extractor, "Findings consistent with cor pulmonale.") == [("cor pulmonale", "cor pulmonale", "OTHER", "present")]


def test_an_inline_impression_starts_the_impression_section(extractor):
    text = "The heart is normal in size. IMPRESSION: No pneumothorax."
    assert ("pneumothorax", "pneumothorax", "IMPRESSION", "absent") in mentions_of(extractor, text)  # was OTHER and present
    text = "FINDINGS: Heart size normal. IMPRESSION: Right lower lobe pneumonia."
    assert [(s.name, text[s.start:s.end]) for s in SPLITTER.split(text)] == [
        ("FINDINGS", "Heart size normal."), ("IMPRESSION", "Right lower lobe pneumonia.")]
    for prose in ("History of pneumonia. Impression: improving.", "Seen by Dr. IMPRESSION on call", "No effusion.IMPRESSION: x"):
        assert [s.name for s in SPLITTER.split(prose)] == ["OTHER"]  # lower case, no colon, or no space: not a title


def test_a_broken_quote_costs_its_row_and_an_unclosed_one_is_named(tmp_path):
    path = write_csv(tmp_path / "reports.csv", [b"r1,one\n", b'r2,"two "x" broken"\n', b"r3,three\n", b'r4,"four\n', b"r5,five\n"])
    problems = ProblemLog()
    assert [r.id for r in iter_reports(path, problems, SPLITTER)] == ["r1", "r3"]
    assert [(p.line, p.kind) for p in problems.problems] == [(3, "csv"), (5, "csv")]
    assert "never closed" in problems.problems[1].message  # read before as one report holding the rest of the file
