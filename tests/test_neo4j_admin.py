"""`medkg kg export --format neo4j-admin` against the header format documented for
`neo4j-admin database import full` (Neo4j Operations Manual, "Import: CSV header format")."""

from __future__ import annotations

import csv
import re

from graphdb.neo4j_admin import ARRAY_DELIMITER, COMMAND_FILE, NODES_FILE, RELATIONSHIPS_FILE, export_neo4j_admin
from tests.graphs import small_graph

# name:type, name:type[], :ID / :ID(group), :LABEL, :START_ID(group), :END_ID(group), :TYPE, :IGNORE
_TYPES = "int|long|float|double|boolean|byte|short|char|string|point|date|localtime|time|localdatetime|datetime|duration"
FIELD = re.compile(rf"^(?:(\w+)(?::({_TYPES})(\[\])?)?|(\w+)?:ID(?:\(\w+\))?|:LABEL|:START_ID(?:\(\w+\))?|:END_ID(?:\(\w+\))?|:TYPE|:IGNORE)$")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_headers_follow_the_documented_format(tmp_path):
    counts = export_neo4j_admin(small_graph(), tmp_path)
    nodes, rels = read_csv(tmp_path / NODES_FILE), read_csv(tmp_path / RELATIONSHIPS_FILE)
    for header in (nodes[0], rels[0]):
        assert all(FIELD.match(field) for field in header), header
    assert sum(":ID" in f for f in nodes[0]) == 1 and ":LABEL" in nodes[0]
    assert {":START_ID", ":END_ID", ":TYPE"} <= set(rels[0])
    assert counts == {"nodes": 7, "relationships": 5}
    assert len(nodes) == 8 and len(rels) == 6


def test_rows_round_trip_arrays_quotes_and_ids(tmp_path):
    kg = small_graph()
    export_neo4j_admin(kg, tmp_path)
    header, *rows = read_csv(tmp_path / NODES_FILE)
    by_id = {row[0]: dict(zip(header, row)) for row in rows}
    effusion = by_id["T:effusion"]
    assert effusion["synonyms:string[]"].split(ARRAY_DELIMITER) == ["effusion", "fluid in the pleural space"]
    assert effusion[":LABEL"] == "Concept"
    assert by_id["T:isolated"]["name"] == 'it\'s "quoted" {name: $x}'  # CSV quoting survives
    rel_header, *rel_rows = read_csv(tmp_path / RELATIONSHIPS_FILE)
    for row in rel_rows:
        rel = dict(zip(rel_header, row))
        assert rel[":START_ID"] in by_id and rel[":END_ID"] in by_id
        assert int(rel["support:long"]) >= 0
    located = [dict(zip(rel_header, r)) for r in rel_rows if r[2] == "LOCATED_AT"]
    assert located == [{":START_ID": "T:effusion", ":END_ID": "T:pleura", ":TYPE": "LOCATED_AT", "rel": "RO",
                        "rela": "located_at", "source": "IUXRAY", "support:long": "12"}]
    command = (tmp_path / COMMAND_FILE).read_text()
    assert command.startswith("neo4j-admin database import full ")
    assert f"--nodes={NODES_FILE}" in command and f"--relationships={RELATIONSHIPS_FILE}" in command
    assert f"--array-delimiter='{ARRAY_DELIMITER}'" in command
