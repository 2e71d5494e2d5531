"""How UMLS relationships (REL, RELA) map to medkg's few relationship types, both ways.

Graph edges point from the narrower or dependent concept: `effusion IS_A pleural disorder`,
`opacity LOCATED_AT lung`. In RRF that edge is written `CUI1=tail, CUI2=head`, since REL/RELA
say what CUI2 is to CUI1.
"""

from __future__ import annotations

RELATION_TYPES = ("IS_A", "LOCATED_AT", "HAS_MODIFIER", "CO_OCCURS_WITH", "RELATED_TO")

# REL values that are hierarchy; True when CUI2 is the narrower concept.
_HIERARCHY = {"CHD": True, "RN": True, "PAR": False, "RB": False}
_INVERSE_RELA = {"inverse_isa": "isa"}
_RELA_TYPES = {"isa": "IS_A", "located_at": "LOCATED_AT", "has_modifier": "HAS_MODIFIER", "co_occurs_with": "CO_OCCURS_WITH"}


def edge_from_rrf(cui1: str, rel: str, cui2: str, rela: str) -> tuple[str, str, str, str]:
    """`(head, TYPE, tail, rela)` for one MRREL row."""
    if rel in _HIERARCHY:
        narrower_is_cui2 = _HIERARCHY[rel]
        head, tail = (cui2, cui1) if narrower_is_cui2 else (cui1, cui2)
        return head, "IS_A", tail, _INVERSE_RELA.get(rela, rela)
    return cui2, _RELA_TYPES.get(rela, "RELATED_TO"), cui1, rela


def rrf_from_edge(head: str, relation: str, tail: str, rela: str = "") -> tuple[str, str, str, str]:
    """`(CUI1, REL, CUI2, RELA)` that `edge_from_rrf` reads back as the same edge."""
    if relation == "IS_A":
        return tail, "CHD", head, rela or "isa"
    if relation != "RELATED_TO" and not rela:
        rela = relation.lower()
    return tail, "RO", head, rela
