"""Small graphs for store tests; ids start with `T:` so a shared live database can be cleaned."""

from __future__ import annotations

from kg.graph import Concept, KnowledgeGraph, Relation

PREFIX = "T:"


def small_graph() -> KnowledgeGraph:
    kg = KnowledgeGraph()
    for cid, name, synonyms, group in [
        ("T:effusion", "pleural effusion", ["effusion", "fluid in the pleural space"], "DISO"),
        ("T:pleura", "pleura", [], "ANAT"),
        ("T:pleural_disease", "pleural disease", [], "DISO"),
        ("T:disease", "disease", [], "DISO"),
        ("T:ptx", "pneumothorax", ["collapsed lung"], "DISO"),
        ("T:heart", "heart", [], "ANAT"),
        ("T:isolated", "it's \"quoted\" {name: $x}", [], "CONC"),
    ]:
        kg.add_concept(Concept(cid, name, synonyms, ["T047"] if group == "DISO" else ["T023"], group, f"{name}.", [f"TEST:{cid[2:]}"]))
    for head, rtype, tail, rela, source, support in [
        ("T:effusion", "IS_A", "T:pleural_disease", "isa", "TEST", 0),
        ("T:ptx", "IS_A", "T:pleural_disease", "isa", "TEST", 0),
        ("T:pleural_disease", "IS_A", "T:disease", "isa", "TEST", 0),
        ("T:effusion", "LOCATED_AT", "T:pleura", "located_at", "IUXRAY", 12),
        ("T:effusion", "CO_OCCURS_WITH", "T:ptx", "co_occurs_with", "IUXRAY", 3),
    ]:
        kg.add_relation(Relation(head, rtype, tail, "CHD" if rtype == "IS_A" else "RO", rela, source, support))
    return kg
