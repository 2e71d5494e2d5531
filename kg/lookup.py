"""Rank concepts for a free-text name: exact names first, then near misses.

Keys are `name_key`s, so case, punctuation and plurals never matter; rapidfuzz scores
misspellings ("pleural efusion") against every distinct key in C++.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from .normalize import name_key

PREFERRED, SYNONYM = 100.0, 98.0  # an exact preferred name beats an exact synonym
FUZZY_WEIGHT = 0.95  # a near miss never outranks an exact hit


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    name: str
    score: float
    matched: str  # the name or synonym that matched


class NameIndex:
    def __init__(self, concepts: Iterable[tuple[str, str, list[str] | None, int]]):
        """`concepts` yields (id, preferred name, synonyms, weight); weight breaks ties (e.g. source count)."""
        self.names: dict[str, str] = {}
        self.weight: dict[str, int] = {}
        self.by_key: dict[str, list[tuple[str, str, bool]]] = {}  # key -> [(id, string, preferred)]
        for cid, name, synonyms, weight in concepts:
            self.names[cid] = name
            self.weight[cid] = weight
            for string, preferred in [(name, True)] + [(s, False) for s in synonyms or ()]:
                key = name_key(string)
                if key:
                    self.by_key.setdefault(key, []).append((cid, string, preferred))
        self.keys = list(self.by_key)

    def __len__(self) -> int:
        return len(self.names)

    def search(self, text: str, limit: int = 10) -> list[Hit]:
        key = name_key(text)
        if not key:
            return []
        best: dict[str, Hit] = {}

        def offer(cid: str, string: str, score: float) -> None:
            if cid not in best or score > best[cid].score:
                best[cid] = Hit(cid, self.names[cid], round(score, 2), string)

        for cid, string, preferred in self.by_key.get(key, ()):
            offer(cid, string, PREFERRED if preferred else SYNONYM)
        for candidate, score, _ in process.extract(key, self.keys, scorer=fuzz.WRatio, limit=limit * 5, score_cutoff=60):
            if candidate == key:
                continue
            # WRatio rewards partial matches; blend with plain ratio so a closer whole name wins.
            blended = FUZZY_WEIGHT * (0.5 * score + 0.5 * fuzz.ratio(key, candidate))
            for cid, string, _preferred in self.by_key[candidate]:
                offer(cid, string, blended)
        ranked = sorted(best.values(), key=lambda h: (-h.score, -self.weight[h.id], len(h.name), h.id))
        return ranked[:limit]
