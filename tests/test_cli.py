"""`medkg kg ...` end to end on the hand-made UMLS fixture: build, load, query, export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medkg.cli import main

META = Path(__file__).parent / "fixtures" / "umls-mini"


@pytest.fixture
def graph(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("MEDKG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MEDKG_GRAPH", raising=False)
    out = tmp_path / "umls-kg"
    assert main(["kg", "build", "--source", "umls", "--umls-dir", str(META), "--out", str(out), "-q"]) == 0
    assert main(["kg", "load", str(out), "-q"]) == 0
    return out


def run_json(capsys, *argv) -> list[dict]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list)
    return rows


def test_build_reports_skipped_lines(tmp_path, capsys, data_dir, monkeypatch):
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))
    assert main(["kg", "build", "--source", "umls", "--umls-dir", str(META), "--out", str(tmp_path / "o"), "-q"]) == 0
    captured = capsys.readouterr()
    assert "5 concepts" in captured.out
    assert "skipped input: 4 problems" in captured.err  # 2 MRCONSO lines, 1 MRREL line, 1 dangling relation
    assert main(["kg", "build", "--source", "umls", "--umls-dir", str(META), "--out", str(tmp_path / "s"), "--strict", "-q"]) == 2
    assert "MRCONSO.RRF:9: column count" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # a failed build leaves nothing behind


def test_lookup_neighbors_path_as_json(graph, capsys):
    rows = run_json(capsys, "kg", "lookup", "pleural efusions", "--limit", "2")
    assert rows[0]["id"] == "C0032227" and rows[0]["name"] == "Pleural Effusion"
    rows = run_json(capsys, "kg", "lookup", "enlarged heart")
    assert rows[0]["id"] == "C0018800"
    rows = run_json(capsys, "kg", "neighbors", "C0032227", "--rel", "IS_A")
    assert [(r["id"], r["name"], r["relation"]) for r in rows] == [("C0032226", "Pleural Diseases", "IS_A")]
    rows = run_json(capsys, "kg", "path", "C0032225", "C0032226")
    assert [r["id"] for r in rows] == ["C0032225", "C0032227", "C0032226"]


def test_query_params_and_read_only_refusal(graph, capsys):
    rows = run_json(capsys, "kg", "query", "MATCH (c:Concept) WHERE c.name = $name RETURN c", "--param", "name=Pleura")
    assert rows == [{"id": "C0032225", "name": "Pleura", "synonyms": [], "semantic_types": ["T023"], "group": "ANAT",
                     "definition": "", "sources": ["MSH:D010994"]}]
    rows = run_json(capsys, "kg", "query", "MATCH (c:Concept) RETURN c.id, c.name ORDER BY c.id LIMIT $n", "--param", "n=2")
    assert rows == [{"id": "C0018787", "name": "Heart"}, {"id": "C0018800", "name": "Cardiomegaly"}]

    assert main(["kg", "query", "MATCH (c:Concept) DETACH DELETE c"]) == 3
    assert "pass --write" in capsys.readouterr().err
    assert run_json(capsys, "kg", "info")[0] == {"table": "Concept", "count": 5}

    assert run_json(capsys, "kg", "lookup", "heart")[0]["name"] == "Heart"  # fills the look-up cache
    assert main(["kg", "query", "MATCH (c:Concept {id: $id}) SET c.name = $name", "--param", "id=C0018787", "--param", "name=Cor", "--write"]) == 0
    assert run_json(capsys, "kg", "lookup", "cor")[0] == {"id": "C0018787", "name": "Cor", "score": 100.0, "matched": "Cor"}


def test_errors_are_clear_and_name_what_is_wrong(graph, capsys, tmp_path):
    assert main(["kg", "neighbors", "C404"]) == 2
    assert "no concept with id 'C404'" in capsys.readouterr().err
    assert main(["kg", "query", "RETURN 1", "--param", "novalue"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["kg", "load", str(tmp_path / "nowhere")]) == 2
    assert "MRCONSO.RRF" in capsys.readouterr().err
    assert main(["kg", "lookup", "x", "--graph", str(tmp_path / "db")]) == 2
    assert "unknown graph URI" in capsys.readouterr().err


def test_export_neo4j_admin(graph, capsys, tmp_path):
    assert main(["kg", "export", "--format", "neo4j-admin", str(graph), str(tmp_path / "csv")]) == 0
    out = capsys.readouterr().out
    assert "5 nodes, 3 relationships" in out  # CHD and PAR rows are one edge
    assert "neo4j-admin database import full" in out
    assert (tmp_path / "csv" / "concepts.csv").read_text().startswith("id:ID,name,")


def test_console_entry_point():
    result = subprocess.run([sys.executable, "-m", "medkg", "kg", "--help"], capture_output=True, text=True, check=True)
    for command in ("build", "load", "lookup", "neighbors", "path", "query", "export"):
        assert command in result.stdout


def test_every_help_page_renders_its_text_as_written():
    """argparse %-formats `help=` strings but prints `description=` as written: a doubled %% there reached users."""
    import argparse

    from medkg.cli import build_parser

    def pages(parser: argparse.ArgumentParser):
        yield parser.prog, parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from pages(child)

    seen = dict(pages(build_parser()))
    assert len(seen) > 20 and "medkg evaluate" in seen
    assert "95% intervals" in " ".join(seen["medkg evaluate"].split())
    assert [prog for prog, text in seen.items() if "%%" in text] == []
