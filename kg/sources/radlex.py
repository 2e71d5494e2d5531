"""RadLex reader: the `name,RID,parent RID` export becomes concepts and an is_a tree.

RadLex carries no semantic types, so each term gets the UMLS TUI of the branch it sits in;
that lets the merge step keep anatomy, findings and descriptors apart.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from kg.model import SourceConcept, SourceRelation
from kg.problems import ProblemLog

SOURCE = "RADLEX"
ROOT_RID = "RID1"  # "RadLex entity"; not a row of the export, so no edge points at it
OBSOLETE_RID = "RID15849"  # "Obsolete Radlex Term": its subtree is retired and left out

# Nearest listed ancestor-or-self wins: a top branch (child of RID1) gives the default and a
# few sub-branches that mean something else override it.
TUI_BY_RID: dict[str, str] = {
    "RID3": "T023",  # anatomical entity -> Body Part, Organ, or Organ Component
    "RID13218": "T029",  # immaterial anatomical entity -> Body Location or Region
    "RID13217": "T030",  # anatomical space -> Body Space or Junction
    "RID34785": "T033",  # clinical finding -> Finding
    "RID39050": "T184",  # symptom -> Sign or Symptom
    "RID5": "T033",  # imaging observation -> Finding
    "RID10311": "T060",  # imaging modality -> Diagnostic Procedure
    "RID1559": "T058",  # procedure (mostly interventional) -> Health Care Activity
    "RID13060": "T060",  # imaging procedure -> Diagnostic Procedure
    "RID7467": "T058",  # procedure step -> Health Care Activity
    "RID6": "T080",  # RadLex descriptor -> Qualitative Concept
    "RID5817": "T082",  # location descriptor (incl. laterality) -> Spatial Concept
    "RID5851": "T082",  # orientation descriptor -> Spatial Concept
    "RID39102": "T082",  # anatomically-related descriptor -> Spatial Concept
    "RID5716": "T079",  # temporal descriptor -> Temporal Concept
    "RID5772": "T081",  # size descriptor -> Quantitative Concept
    "RID5761": "T081",  # quantity descriptor -> Quantitative Concept
    "RID45812": "T051",  # workflow term (OrderCreated, Billed, ...) -> Event
    "RID35977": "T080",  # property -> Qualitative Concept
    "RID39038": "T082",  # location -> Spatial Concept
    "RID6020": "T082",  # clock face position -> Spatial Concept
    "RID10420": "T082",  # patient position -> Spatial Concept
    "RID10409": "T081",  # measurement type -> Quantitative Concept
    "RID34861": "T073",  # object -> Manufactured Object
    "RID29038": "T074",  # medical object -> Medical Device
    "RID7479": "T167",  # non-anatomical substance -> Substance
    "RID35973": "T121",  # pharmaceutical -> Pharmacologic Substance
    "RID11756": "T196",  # chemical element -> Element, Ion, or Isotope
    "RID11695": "T196",  # radioisotope -> Element, Ion, or Isotope
    "RID39128": "T067",  # process -> Phenomenon or Process
    "RID49573": "T079",  # temporal entity -> Temporal Concept
    "RID13158": "T170",  # report component -> Intellectual Product
    "RID28487": "T170",  # report -> Intellectual Product
    "RID28639": "T185",  # RadLex non-anatomical set (BI-RADS term sets) -> Classification
}
_ANCHORS = TUI_BY_RID.keys() | {OBSOLETE_RID}
_RID = re.compile(r"RID\d+")


def read(path: Path, problems: ProblemLog) -> tuple[list[SourceConcept], list[SourceRelation]]:
    """Read `Radlex.csv`; rows that cannot be used are reported and skipped."""
    rows = _read_rows(path, problems)
    parent_of = {rid: parent for _, rid, _, parent in rows}
    line_of = {rid: line for line, rid, _, _ in rows}
    anchor = _branch_anchors(parent_of, line_of, path, problems)

    concepts: list[SourceConcept] = []
    relations: list[SourceRelation] = []
    for line, rid, name, parent in rows:
        if anchor[rid] == OBSOLETE_RID:
            continue
        tui = TUI_BY_RID.get(anchor[rid] or "")
        concepts.append(SourceConcept(SOURCE, rid, name, semantic_types=[tui] if tui else []))
        if parent == ROOT_RID:
            continue
        if parent not in parent_of:
            problems.report(path, line, "dangling parent", f"{rid} ({name}): parent {parent} is not in the file")
            continue
        relations.append(SourceRelation(f"{SOURCE}:{rid}", "is_a", f"{SOURCE}:{parent}", SOURCE))
    return concepts, relations


def _read_rows(path: Path, problems: ProblemLog) -> list[tuple[int, str, str, str]]:
    """(line, RID, name, parent RID) of every usable row; first occurrence of a RID wins."""
    rows: list[tuple[int, str, str, str]] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                problems.report(path, reader.line_num, "csv", str(e))
                continue
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 3:
                problems.report(path, line, "column count", f"expected 3 columns, got {len(row)}: {row!r}")
                continue
            name, rid, parent = (cell.strip() for cell in row)
            if "\ufffd" in name:  # kept: code and tree position are intact
                problems.report(path, line, "encoding", f"{rid}: name {name!r} lost a character")
            if not name or not _RID.fullmatch(rid) or not _RID.fullmatch(parent):
                problems.report(path, line, "bad value", f"need name, RID, parent RID: {row!r}")
                continue
            if rid in seen:
                problems.report(path, line, "duplicate code", f"{rid} appears again")
                continue
            seen.add(rid)
            rows.append((line, rid, name, parent))
    return rows


def _branch_anchors(
    parent_of: dict[str, str], line_of: dict[str, int], path: Path, problems: ProblemLog
) -> dict[str, str | None]:
    """Nearest ancestor-or-self in `_ANCHORS` per RID (None below the root, a dangling parent or a cycle).

    Walks are memoised, so the whole tree costs one visit per term, and a cycle ends the
    walk (reported once) instead of looping.
    """
    anchor: dict[str, str | None] = {}
    for start in parent_of:
        walked: dict[str, None] = {}  # insertion-ordered set of this walk
        rid = start
        while rid not in anchor and rid not in _ANCHORS and rid not in walked and rid in parent_of:
            walked[rid] = None
            rid = parent_of[rid]
        if rid in _ANCHORS:
            found: str | None = rid
        elif rid in anchor:
            found = anchor[rid]
        else:
            found = None
            if rid in walked:
                problems.report(path, line_of[rid], "cycle", f"is_a cycle through {rid}")
        for visited in walked:
            anchor[visited] = found
        anchor.setdefault(start, found)
    return anchor
