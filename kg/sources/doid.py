"""Disease Ontology reader: OBO 1.2 `[Term]` stanzas become concepts, `is_a` lines relations.

DOID is the source that asserts UMLS CUIs and MeSH ids for diseases, so those xrefs are kept
for the merge step; obsolete terms are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kg.model import SourceConcept, SourceRelation
from kg.problems import ProblemLog

SOURCE = "DOID"
SEMANTIC_TYPE = "T047"  # Disease or Syndrome
KEPT_SYNONYM_SCOPES = {"EXACT", "RELATED"}  # BROAD/NARROW name other concepts
_ID = re.compile(r"DOID:(\d+)")
_CUI = re.compile(r"C\d{7}")
_MESH_DESCRIPTOR = re.compile(r"D\d+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\s*(.*)')  # "text with \" escapes" rest
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", "W": " "}  # OBO 1.2; any other \x is x


@dataclass
class _Stanza:
    line: int
    tags: list[tuple[int, str, str]] = field(default_factory=list)  # (line, tag, value)

    def values(self, tag: str) -> list[tuple[int, str]]:
        return [(line, value) for line, t, value in self.tags if t == tag]


def read(path: Path, problems: ProblemLog) -> tuple[list[SourceConcept], list[SourceRelation]]:
    """Read a DOID `.obo` file; stanzas without a usable id or name are reported and skipped."""
    concepts: dict[str, SourceConcept] = {}
    parents: list[tuple[int, str, str]] = []  # (line, child code, parent code)
    for stanza in _term_stanzas(path, problems):
        term = _concept(stanza, path, problems)
        if term is None:
            continue
        concept, is_a = term
        if concept.code in concepts:
            problems.report(path, stanza.line, "duplicate code", f"DOID:{concept.code} appears again")
            continue
        concepts[concept.code] = concept
        parents.extend((line, concept.code, parent) for line, parent in is_a)

    relations: list[SourceRelation] = []
    for line, child, parent in parents:
        if parent not in concepts:
            problems.report(path, line, "dangling parent", f"DOID:{child} is_a DOID:{parent}, absent or obsolete")
            continue
        relations.append(SourceRelation(f"{SOURCE}:{child}", "is_a", f"{SOURCE}:{parent}", SOURCE))
    return list(concepts.values()), relations


def _term_stanzas(path: Path, problems: ProblemLog) -> list[_Stanza]:
    """Tag lines of every `[Term]` stanza; header and `[Typedef]` stanzas are passed over."""
    stanzas: list[_Stanza] = []
    current: _Stanza | None = None
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        for line, raw in enumerate(f, start=1):
            text = raw.strip()
            if text.startswith("["):
                current = _Stanza(line) if text == "[Term]" else None
                if current is not None:
                    stanzas.append(current)
            elif not text or text.startswith("!") or current is None:
                continue
            else:
                tag, sep, value = text.partition(":")
                if not sep or not tag or " " in tag:
                    problems.report(path, line, "syntax", f"not a `tag: value` line: {text[:80]!r}")
                    continue
                current.tags.append((line, tag, value.strip()))
    return stanzas


def _concept(stanza: _Stanza, path: Path, problems: ProblemLog) -> tuple[SourceConcept, list[tuple[int, str]]] | None:
    """The stanza's concept and (line, parent code) pairs; None if obsolete or unusable."""
    ids = stanza.values("id")
    names = stanza.values("name")
    match = _ID.fullmatch(ids[0][1]) if len(ids) == 1 else None
    if match is None or len(names) != 1 or not names[0][1]:
        problems.report(
            path, stanza.line, "incomplete stanza", f"[Term] needs one DOID id and one name, got {ids} {names}"
        )
        return None
    if any(value == "true" for _, value in stanza.values("is_obsolete")):
        return None
    if "\ufffd" in names[0][1]:  # kept: the id and its xrefs are intact
        problems.report(path, names[0][0], "encoding", f"{ids[0][1]}: name {names[0][1]!r} lost a character")
    concept = SourceConcept(SOURCE, match.group(1), names[0][1], semantic_types=[SEMANTIC_TYPE])

    for line, value in stanza.values("def"):
        quoted = _quoted(value, path, line, problems)
        if quoted is not None:
            concept.definition = quoted[0]
    for line, value in stanza.values("synonym"):
        quoted = _quoted(value, path, line, problems)
        if quoted is None:
            continue
        text, rest = quoted
        scope = rest.split(maxsplit=1)[0] if rest else ""
        if scope in KEPT_SYNONYM_SCOPES and text and text != concept.name and text not in concept.synonyms:
            concept.synonyms.append(text)
    for _, value in stanza.values("xref"):
        prefix, _, local = value.split(maxsplit=1)[0].partition(":") if value else ("", "", "")
        if prefix in ("UMLS_CUI", "UMLS") and _CUI.fullmatch(local) and local not in concept.cuis:
            concept.cuis.append(local)
        elif prefix.upper() in ("MESH", "MSH") and _MESH_DESCRIPTOR.fullmatch(local):
            xref = f"MESH:{local}"
            if xref not in concept.xrefs:
                concept.xrefs.append(xref)

    is_a: list[tuple[int, str]] = []
    for line, value in stanza.values("is_a"):
        parent = _ID.match(value)
        if parent is None:
            problems.report(path, line, "syntax", f"is_a is not a DOID id: {value[:80]!r}")
        else:
            is_a.append((line, parent.group(1)))
    return concept, is_a


def _quoted(value: str, path: Path, line: int, problems: ProblemLog) -> tuple[str, str] | None:
    """Unescaped text of a leading OBO quoted string and what follows it."""
    match = _QUOTED.fullmatch(value)
    if match is None:
        problems.report(path, line, "syntax", f"expected a quoted string: {value[:80]!r}")
        return None
    text = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), match.group(1))
    return text.strip(), match.group(2)
