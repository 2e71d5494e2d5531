"""Spot Cypher that writes, or that reads or writes files, so such a query is refused before it reaches the database.

The databases enforce read-only access themselves (a read-only LadybugDB, Neo4j read sessions),
so for writes this check exists to refuse early with a message that names the clause. Neither
enforces anything about files: a read-only LadybugDB runs `LOAD FROM '/etc/passwd'`, Neo4j runs
`LOAD CSV`. So file access is refused here unless asked for, whether the query writes or not.

The check reads tokens, not text: string literals, `quoted names` and comments are set aside first
(with the escapes both dialects use), and a keyword counts only in clause position, so a property,
label, alias or map key spelt like a keyword (`RETURN c.id AS Set`, `{set: 1}`, `(:Load)`) is not
a clause. A variable spelt like a write keyword in clause position (`WITH 1 AS x RETURN set`) is
still taken for one; quote it (`set`) to say it is a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kg.errors import MedkgError

WRITES = frozenset({
    "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "ALTER", "COPY", "IMPORT", "EXPORT",
    "INSTALL", "UNINSTALL", "ATTACH", "FOREACH", "CHECKPOINT",
})  # fmt: skip
# LadybugDB: LOAD FROM / LOAD WITH HEADERS scan files and URLs, LOAD <extension> loads code; COPY FROM / TO,
# IMPORT / EXPORT DATABASE, ATTACH and INSTALL read or write files. Neo4j: LOAD CSV.
FILES = frozenset({"LOAD", "COPY", "IMPORT", "EXPORT", "ATTACH", "INSTALL"})
# Neo4j procedures (APOC) that read or write files and URLs, and those that run Cypher given as a string,
# which this check cannot see into.
FILE_PROCEDURES = frozenset({"apoc.load", "apoc.import", "apoc.export", "apoc.log"})
DYNAMIC_PROCEDURES = frozenset({"apoc.cypher", "apoc.periodic", "apoc.do", "apoc.trigger", "apoc.custom"})

_TOKENS = re.compile(
    r"""(?P<skip>'(?:[^'\\]|\\.)*(?:'|\Z)|"(?:[^"\\]|\\.)*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z)|//[^\n]*|/\*.*?(?:\*/|\Z))
      |(?P<word>[^\W\d]\w*)
      |(?P<other>\S)""",
    re.DOTALL | re.VERBOSE,
)
LITERAL = "'…'"  # what a string, a quoted name or a comment becomes among the tokens
_NOT_A_CLAUSE_AFTER = frozenset({".", ":", "$", "AS"})


class ReadOnlyError(MedkgError, PermissionError):
    pass


class FileAccessError(ReadOnlyError):
    """A query that reads or writes files or URLs, refused unless file access was allowed."""


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    word: bool


def tokens(cypher: str) -> list[_Token]:
    """The tokens of a statement; comments are dropped, strings and `quoted names` become one LITERAL token."""
    found = []
    for m in _TOKENS.finditer(cypher):
        if m.group("skip") is not None:
            if not m.group("skip").startswith(("//", "/*")):
                found.append(_Token(LITERAL, False))
        else:
            found.append(_Token(m.group(), m.group("word") is not None))
    return found


def _clauses(cypher: str) -> list[str]:
    """Upper-case keywords in clause position: words not after `.`, `:`, `$` or AS and not before `:` (a map key)."""
    toks = tokens(cypher)
    found = []
    for i, token in enumerate(toks):
        if not token.word:
            continue
        before = toks[i - 1].text.upper() if i else ""
        after = toks[i + 1].text if i + 1 < len(toks) else ""
        if before not in _NOT_A_CLAUSE_AFTER and after != ":":
            found.append(token.text.upper())
    return found


def _procedures(cypher: str) -> list[str]:
    """Dotted names as written (`apoc.load.json`), lower case: procedure and function names."""
    toks = tokens(cypher)
    names, i = [], 0
    while i < len(toks):
        if toks[i].word:
            parts = [toks[i].text]
            while i + 2 < len(toks) and toks[i + 1].text == "." and toks[i + 2].word:
                parts.append(toks[i + 2].text)
                i += 2
            if len(parts) > 1:
                names.append(".".join(parts).lower())
        i += 1
    return names


def _procedure_in(cypher: str, families: frozenset[str]) -> str | None:
    return next((name for name in _procedures(cypher) if any(name == f or name.startswith(f + ".") for f in families)), None)


def write_clause(cypher: str) -> str | None:
    """The first clause that writes (or a procedure running Cypher given as a string), or None for a read-only statement."""
    clause = next((c for c in _clauses(cypher) if c in WRITES), None)
    return clause or _procedure_in(cypher, DYNAMIC_PROCEDURES)


def file_clause(cypher: str) -> str | None:
    """The first clause or procedure that reads or writes files or URLs, or None."""
    clause = next((c for c in _clauses(cypher) if c in FILES), None)
    return clause or _procedure_in(cypher, FILE_PROCEDURES)


def refuse_writes(cypher: str) -> None:
    clause = write_clause(cypher)
    if clause is not None:
        raise ReadOnlyError(f"refused: the query writes ({clause}) and the graph is opened read-only. Nothing was changed.")


def refuse_file_access(cypher: str) -> None:
    clause = file_clause(cypher)
    if clause is not None:
        raise FileAccessError(f"refused: the query reads or writes files ({clause}) and file access was not allowed. "
                              "Nothing was read or changed.")
