"""Relations read off concept names: "pleural effusion" is located at the pleura.

Vocabularies name findings after the anatomy they affect, usually with the anatomy's
adjective; that adjective, mapped back to its noun, gives a `located_at` edge.
"""

from __future__ import annotations

from collections.abc import Iterable

from .merge import MergedConcept
from .model import SourceRelation
from .normalize import name_key

SOURCE = "MEDKG"
# Latin and Greek adjectives whose noun is not a suffix change away.
IRREGULAR = {"pulmonary": "lung", "cardiac": "heart", "hepatic": "liver", "renal": "kidney", "gastric": "stomach",
             "cerebral": "brain", "thoracic": "thorax", "costal": "rib", "osseous": "bone", "cutaneous": "skin"}
_SUFFIXES = (("al", ("a", "um", "us", "e", "")), ("ar", ("um", "a", "")), ("ic", ("a", "")))


def nouns_for(word: str) -> list[str]:
    """Candidate nouns for an adjective: pleural -> pleura, mediastinal -> mediastinum."""
    found = [IRREGULAR[word]] if word in IRREGULAR else []
    for suffix, endings in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            found += [stem + e for e in endings]
    return found + [word]


def located_at_from_names(
    concepts: Iterable[MergedConcept], is_finding: set[str], is_anatomy: set[str]
) -> list[SourceRelation]:
    """`finding located_at anatomy` for findings whose name has an anatomy word before its head noun."""
    concepts = list(concepts)
    anatomy = {name_key(c.name): c.id for c in concepts if c.id in is_anatomy}
    relations = []
    for c in concepts:
        if c.id not in is_finding:
            continue
        words = name_key(c.name).split()
        targets = {anatomy[n] for w in words[:-1] for n in nouns_for(w) if n in anatomy}
        relations += [SourceRelation(c.id, "located_at", t, SOURCE) for t in sorted(targets) if t != c.id]
    return relations
