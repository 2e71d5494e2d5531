"""Spot Cypher that writes, so a read-only query is refused before it reaches the database.

The databases enforce read-only access themselves (a read-only LadybugDB, Neo4j read
sessions); this check exists to refuse early with a message that names the clause.
"""

from __future__ import annotations

import re

from kg.errors import MedkgError

# Strings, comments and `quoted names` can hold any word; blank them before looking for clauses.
_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|//[^\n]*|/\*.*?\*/", re.S)
_WRITES = re.compile(
    r"\b(CREATE|MERGE|SET|DELETE|DETACH|REMOVE|DROP|ALTER|COPY|IMPORT|EXPORT|INSTALL|ATTACH|FOREACH|CHECKPOINT)\b"
    r"|\bLOAD\s+(EXTENSION|CSV)\b",
    re.I,
)


class ReadOnlyError(MedkgError, PermissionError):
    pass


def write_clause(cypher: str) -> str | None:
    """The first clause that writes, or None for a read-only statement."""
    match = _WRITES.search(_LITERALS.sub(" ", cypher))
    return match.group(0).upper() if match else None


def refuse_writes(cypher: str) -> None:
    clause = write_clause(cypher)
    if clause is not None:
        raise ReadOnlyError(f"refused: the query writes ({clause}) and the graph is opened read-only; pass --write to allow it. Nothing was changed.")
