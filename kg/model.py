"""Records that source readers emit before concepts are merged into one graph.

Sources speak in their own codes (`RADLEX:RID34539`); merging turns them into concept ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SourceConcept:
    """One term of one vocabulary, with everything that may tie it to other vocabularies."""

    source: str  # vocabulary abbreviation (SAB): RADLEX, MESH, DOID, CHEXPERT, IUXRAY
    code: str  # the vocabulary's own code: RID34539, D010996, DOID:1324 -> "1324"
    name: str
    synonyms: list[str] = field(default_factory=list)
    definition: str | None = None
    cuis: list[str] = field(default_factory=list)  # UMLS CUIs asserted by the source
    xrefs: list[str] = field(default_factory=list)  # other "SAB:CODE" the source declares equal
    semantic_types: list[str] = field(default_factory=list)  # UMLS TUIs, e.g. T047

    @property
    def key(self) -> str:
        return f"{self.source}:{self.code}"


@dataclass(slots=True)
class SourceRelation:
    """`head relation tail` between two source concepts (keys as in SourceConcept.key)."""

    head: str
    relation: str  # is_a, located_at, has_modifier, co_occurs_with, related_to
    tail: str
    source: str
    support: int | None = None  # reports that support a mined relation
