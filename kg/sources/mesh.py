"""MeSH reader: anatomy (A) and disease (C) descriptors of the tree file, with is_a from tree numbers.

A descriptor sits at several tree numbers; it becomes one concept, and every tree position
contributes its parent edge and its semantic type.
"""

from __future__ import annotations

import re
from pathlib import Path

from kg.model import SourceConcept, SourceRelation
from kg.problems import ProblemLog

SOURCE = "MESH"
KEPT_BRANCHES = ("A", "C")
TUI_BY_BRANCH = {"A": "T023", "C": "T047"}  # Body Part, Organ...; Disease or Syndrome
TUI_BY_TOP = {  # first tree level where the branch default is wrong
    "A01": "T029",  # Body Regions -> Body Location or Region
    "A10": "T024",  # Tissues -> Tissue
    "A11": "T025",  # Cells -> Cell
    "A12": "T031",  # Fluids and Secretions -> Body Substance
    "A16": "T018",  # Embryonic Structures -> Embryonic Structure
    "C04": "T191",  # Neoplasms -> Neoplastic Process
    "C23": "T033",  # Pathological Conditions, Signs and Symptoms -> Finding
    "C26": "T037",  # Wounds and Injuries -> Injury or Poisoning
}
_TREE = re.compile(r"[A-Z]\d{2}(?:\.\d{3})*")
_UI = re.compile(r"D\d+")


def read(path: Path, problems: ProblemLog) -> tuple[list[SourceConcept], list[SourceRelation]]:
    """Read `2017MeshTree.txt` (tab separated, BOM, header row); bad rows are reported and skipped."""
    ui_at: dict[str, str] = {}  # tree number -> descriptor UI
    line_at: dict[str, int] = {}
    concepts: dict[str, SourceConcept] = {}
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        next(f, None)  # header: Tree Number, Desc Ui, Term
        for line, raw in enumerate(f, start=2):
            fields = [field.strip() for field in raw.rstrip("\r\n").split("\t")]
            if fields == [""]:
                continue
            if len(fields) != 3:
                problems.report(path, line, "column count", f"expected 3 columns, got {len(fields)}")
                continue
            tree, ui, term = fields
            if not _TREE.fullmatch(tree) or not _UI.fullmatch(ui) or not term:
                problems.report(path, line, "bad value", f"need tree number, descriptor UI, term: {fields!r}")
                continue
            if "\ufffd" in term:  # kept: code and tree position are intact
                problems.report(path, line, "encoding", f"{ui}: term {term!r} lost a character")
            if not tree.startswith(KEPT_BRANCHES):
                continue
            if tree in ui_at:
                problems.report(path, line, "duplicate code", f"tree number {tree} appears again")
                continue
            concept = concepts.setdefault(ui, SourceConcept(SOURCE, ui, term))
            if concept.name != term:
                problems.report(path, line, "conflicting name", f"{ui} is {concept.name!r}, here {term!r}")
            tui = TUI_BY_TOP.get(tree[:3], TUI_BY_BRANCH[tree[0]])
            if tui not in concept.semantic_types:
                concept.semantic_types.append(tui)
            ui_at[tree] = ui
            line_at[tree] = line

    relations: dict[tuple[str, str], SourceRelation] = {}
    for tree, ui in ui_at.items():
        if "." not in tree:
            continue
        parent_tree = tree.rsplit(".", 1)[0]
        parent = ui_at.get(parent_tree)
        if parent is None:
            problems.report(path, line_at[tree], "dangling parent", f"{ui} at {tree}: no descriptor at {parent_tree}")
        elif parent != ui:
            relations.setdefault((ui, parent), SourceRelation(f"{SOURCE}:{ui}", "is_a", f"{SOURCE}:{parent}", SOURCE))
    return list(concepts.values()), list(relations.values())
