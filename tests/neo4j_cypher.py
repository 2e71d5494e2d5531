"""Validate Cypher statements with Neo4j's own Cypher parser, offline.

The Neo4j backend cannot be exercised against a real server in this project, so
tests check every Cypher statement it sends with the parser and semantic analysis
shipped in the npm package ``@neo4j-cypher/language-support`` (see
``tests/cypher/validate.mjs``). One ``node`` process validates a whole batch.

Install the validator once (needs Node.js and the npm registry; afterwards it
works offline)::

    npm ci --prefix tests/cypher --no-audit --no-fund
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

CYPHER_DIR = Path(__file__).resolve().parent / "cypher"
VALIDATOR = CYPHER_DIR / "validate.mjs"
NODE_MODULES = CYPHER_DIR / "node_modules"
PACKAGE_DIR = NODE_MODULES / "@neo4j-cypher" / "language-support"
INSTALL_COMMAND = "npm ci --prefix tests/cypher --no-audit --no-fund"

_TIMEOUT_S = 600


def _check_installed() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "Cypher validation needs Node.js (`node` is not on PATH). Install "
            f"Node.js, then run `{INSTALL_COMMAND}` from the repository root."
        )
    if not PACKAGE_DIR.is_dir():
        raise RuntimeError(
            f"The Neo4j Cypher parser is not installed: {PACKAGE_DIR} is missing "
            f"(looked for {NODE_MODULES}). Run `{INSTALL_COMMAND}` from the "
            "repository root."
        )
    return node


def validate_cypher_results(
    statements: list[str], *, cypher_version: str = "5"
) -> list[dict[str, Any]]:
    """Return validate.mjs's raw result for each statement.

    Each entry is ``{"ok": bool, "errors": [...], "warnings": [...]}`` where every
    error/warning is ``{"message": str, "line": int (1-based), "offset": int}``.
    ``cypher_version`` is ``"5"`` or ``"25"`` (the language version statements are
    parsed as unless they start with an explicit ``CYPHER 5``/``CYPHER 25``).
    """
    statements = list(statements)
    for i, statement in enumerate(statements):
        if not isinstance(statement, str):
            raise TypeError(f"statement {i} is {type(statement).__name__}, not str")
    if not statements:
        return []
    node = _check_installed()
    proc = subprocess.run(
        [node, str(VALIDATOR), "--cypher-version", str(cypher_version)],
        input=json.dumps(statements),
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=CYPHER_DIR,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{VALIDATOR} failed with exit code {proc.returncode}:\n{proc.stderr.strip()}"
        )
    try:
        results = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(
            f"{VALIDATOR} printed invalid JSON ({exc}):\n{proc.stdout[:2000]}"
        ) from exc
    if not isinstance(results, list) or len(results) != len(statements):
        raise RuntimeError(
            f"{VALIDATOR} returned {len(results) if isinstance(results, list) else results!r}"
            f" results for {len(statements)} statements"
        )
    return results


def validate_cypher(statements: list[str], *, cypher_version: str = "5") -> list[list[str]]:
    """Validate statements in one batch; return the errors of each (empty = valid).

    Each error reads ``"line L, offset O: message"``. Warnings such as deprecations
    are not errors and are left out (see :func:`validate_cypher_results`).
    """
    return [
        [f"line {e['line']}, offset {e['offset']}: {e['message']}" for e in r["errors"]]
        for r in validate_cypher_results(statements, cypher_version=cypher_version)
    ]
