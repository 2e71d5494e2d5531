"""How UMLS relationships (REL, RELA) map to medkg's few relationship types, both ways.

Graph edges point from the narrower or dependent concept: `effusion IS_A pleural disorder`,
`opacity LOCATED_AT lung`. In RRF that edge is written `CUI1=tail, CUI2=head`, since REL/RELA
say what CUI2 is to CUI1.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

RELATION_TYPES = ("IS_A", "LOCATED_AT", "HAS_MODIFIER", "CO_OCCURS_WITH", "RELATED_TO")

# How these mappings apply to whole tables: kg/tables.py.
# REL values that are hierarchy; True when CUI2 is the narrower concept.
HIERARCHY_NARROWER_IS_CUI2 = {"CHD": True, "RN": True, "PAR": False, "RB": False}
INVERSE_RELA = {"inverse_isa": "isa"}
RELA_TYPES = {"isa": "IS_A", "located_at": "LOCATED_AT", "has_modifier": "HAS_MODIFIER", "co_occurs_with": "CO_OCCURS_WITH"}


def rrf_from_edge(head: str, relation: str, tail: str, rela: str = "") -> tuple[str, str, str, str]:
    """`(CUI1, REL, CUI2, RELA)` that `kg.tables.read_tables` reads back as the same edge."""
    if relation == "IS_A":
        return tail, "CHD", head, rela or "isa"
    if relation != "RELATED_TO" and not rela:
        rela = relation.lower()
    return tail, "RO", head, rela


def relation_names(rela: pa.Array | pa.ChunkedArray, types: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The fine-grained name of each relation, as embeddings tell relations apart: its RELA where one is
    given, else its type in lower case. The one statement of that rule, for graphs and Arrow tables alike."""
    return pc.if_else(pc.greater(pc.utf8_length(pc.fill_null(rela, "")), 0), rela, pc.utf8_lower(types))
