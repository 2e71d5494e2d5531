"""The offline Neo4j Cypher validator (tests/neo4j_cypher.py) really parses Cypher.

Needs `npm ci --prefix tests/cypher --no-audit --no-fund` once; without it these
tests fail with a RuntimeError that says so (they never skip).
"""

from __future__ import annotations

import time

import pytest

from tests import neo4j_cypher
from tests.neo4j_cypher import validate_cypher, validate_cypher_results

VALID = [
    "MATCH (c:Concept {id: $id}) RETURN c.id, c.name",
    "UNWIND $rows AS row MERGE (c:Concept {id: row.id}) SET c += row.props",
    "CREATE CONSTRAINT concept_id IF NOT EXISTS FOR (c:Concept) REQUIRE c.id IS UNIQUE",
    "CREATE INDEX concept_name IF NOT EXISTS FOR (c:Concept) ON (c.name)",
    "MATCH p = shortestPath((a:Concept {id: $a})-[*..6]-(b:Concept {id: $b})) RETURN p",
    "CALL db.index.fulltext.queryNodes($index, $q) YIELD node, score RETURN node, score",
    # CALL { ... } IN TRANSACTIONS, with a variable scope clause (Neo4j >= 5.23) ...
    "UNWIND $rows AS row\n"
    "CALL (row) {\n"
    "  MERGE (c:Concept {id: row.id})\n"
    "  SET c += row.props\n"
    "} IN TRANSACTIONS OF 10000 ROWS",
    # ... and with an importing WITH (valid, but deprecated: a warning, not an error).
    "UNWIND $rows AS row\n"
    "CALL {\n"
    "  WITH row\n"
    "  MERGE (c:Concept {id: row.id})\n"
    "  SET c += row.props\n"
    "} IN TRANSACTIONS OF 10000 ROWS",
    "UNWIND $rows AS row "
    "MATCH (a:Concept {id: row.src}) MATCH (b:Concept {id: row.dst}) "
    "MERGE (a)-[r:RELATED {type: row.type}]->(b) SET r += row.props",
    "CREATE FULLTEXT INDEX concept_text IF NOT EXISTS FOR (c:Concept) ON EACH [c.name, c.synonyms]",
    "CREATE VECTOR INDEX concept_emb IF NOT EXISTS FOR (c:Concept) ON c.embedding "
    "OPTIONS {indexConfig: {`vector.dimensions`: 768, `vector.similarity_function`: 'cosine'}}",
    "MATCH (c:Concept) WHERE c.id IN $ids RETURN c { .id, .name } AS concept LIMIT $limit",
    "MATCH (c:Concept) RETURN count(c) AS n",
    "MATCH (c:Concept {id: $id}) RETURN c;",  # one trailing ';' is fine
]

# (statement, substring expected in one of its error messages)
INVALID = [
    ("MATCH (c:Concept RETURN c", "Invalid input 'RETURN'"),
    ("MERGE (c:Concept {id: $id}) SETT c.name = $name", "Invalid input 'SETT'"),
    # Kùzu-only DDL / bulk loading is not Cypher that Neo4j accepts.
    ("CREATE NODE TABLE Concept(id STRING, PRIMARY KEY(id))", "Invalid input 'TABLE'"),
    ("CREATE REL TABLE RELATED(FROM Concept TO Concept)", "Invalid input 'TABLE'"),
    ("COPY Concept FROM 'x.parquet'", "Invalid input 'COPY'"),
    ("LOAD FROM 'x.csv' RETURN *", "Invalid input 'FROM'"),
    # Semantic analysis runs too (no database schema needed).
    ("MATCH (c:Concept) RETURN d", "Variable `d` not defined"),
    ("MATCH (c:Concept) RETURN c LIMIT -1", "'-1' is not a valid value"),
    ("RETURN 1 +", "Invalid input"),
    # A driver sends exactly one statement per run().
    ("MATCH (c) RETURN c;\nMATCH (d) RETURN d", "Expected exactly one statement per query"),
    ("", "Empty statement"),
]

MULTILINE_INVALID = "MERGE (c:Concept {id: $id})\nSETT c.name = $name"

CYPHER_VERSIONS = ["5", "25"]


@pytest.fixture(scope="module", params=CYPHER_VERSIONS, ids=lambda v: f"cypher{v}")
def batch(request):
    """Validate every VALID and INVALID statement in a single node process."""
    version = request.param
    statements = VALID + [s for s, _ in INVALID] + [MULTILINE_INVALID]
    results = validate_cypher_results(statements, cypher_version=version)
    return dict(zip(statements, results))


@pytest.mark.parametrize("statement", VALID)
def test_valid_statement_passes(batch, statement):
    result = batch[statement]
    assert result["errors"] == [], statement
    assert result["ok"] is True


@pytest.mark.parametrize(("statement", "expected"), INVALID)
def test_invalid_statement_fails_with_message(batch, statement, expected):
    result = batch[statement]
    assert result["ok"] is False, statement
    messages = [e["message"] for e in result["errors"]]
    assert any(expected in m for m in messages), messages
    for error in result["errors"]:
        assert isinstance(error["line"], int) and error["line"] >= 1
        assert isinstance(error["offset"], int) and 0 <= error["offset"] <= len(statement)


def test_error_position_points_at_the_bad_token(batch):
    first = batch[MULTILINE_INVALID]["errors"][0]
    assert first["line"] == 2
    assert first["offset"] == MULTILINE_INVALID.index("SETT")


def test_deprecation_is_a_warning_not_an_error(batch):
    result = batch[VALID[7]]
    assert result["ok"] is True
    assert any("deprecated" in w["message"] for w in result["warnings"])


def test_validate_cypher_returns_errors_per_statement_in_order():
    errors = validate_cypher(
        ["MATCH (c:Concept RETURN c", "MATCH (c:Concept) RETURN c", "COPY Concept FROM 'x.parquet'"]
    )
    assert len(errors) == 3
    assert errors[0] and all(isinstance(e, str) for e in errors[0])
    assert errors[0][0].startswith("line 1, offset 17: Invalid input 'RETURN'")
    assert errors[1] == []
    assert any("Invalid input 'COPY'" in e for e in errors[2])


def test_empty_batch_needs_no_node():
    assert validate_cypher([]) == []


def test_batch_of_50_statements_uses_one_process_and_is_fast():
    # 50 distinct statements (validate.mjs validates repeated ones only once).
    filler = [f"MATCH (c:Concept {{id: $id}}) RETURN c.p{i} AS v{i}" for i in range(49 - len(VALID))]
    statements = VALID + filler + ["MATCH (c RETURN c"]
    assert len(set(statements)) == 50
    start = time.perf_counter()
    errors = validate_cypher(statements)
    elapsed = time.perf_counter() - start
    assert [bool(e) for e in errors] == [False] * 49 + [True]
    assert elapsed < 30, f"50 statements took {elapsed:.1f}s"


def test_missing_node_modules_raises_clear_error(monkeypatch, tmp_path):
    missing = tmp_path / "node_modules" / "@neo4j-cypher" / "language-support"
    monkeypatch.setattr(neo4j_cypher, "NODE_MODULES", tmp_path / "node_modules")
    monkeypatch.setattr(neo4j_cypher, "PACKAGE_DIR", missing)
    with pytest.raises(RuntimeError) as excinfo:
        validate_cypher(["RETURN 1"])
    message = str(excinfo.value)
    assert str(missing) in message
    assert "npm ci --prefix tests/cypher" in message


def test_bad_cypher_version_is_rejected():
    with pytest.raises(RuntimeError, match="--cypher-version must be 5 or 25"):
        validate_cypher(["RETURN 1"], cypher_version="4")
