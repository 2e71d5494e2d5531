"""Merge source concepts that denote the same thing into one concept.

Two source concepts are one when they share a UMLS CUI, when one declares the other as a
cross-reference, or when their preferred names normalise to the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .model import SourceConcept, SourceRelation
from .normalize import name_key, uninvert


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclass(slots=True)
class MergedConcept:
    id: str
    members: list[SourceConcept]  # in source priority order; the first names the concept
    cuis: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.members[0].name

    @property
    def semantic_types(self) -> list[str]:
        return list(dict.fromkeys(t for m in self.members for t in m.semantic_types))

    @property
    def definition(self) -> tuple[SourceConcept, str] | None:
        return next(((m, m.definition) for m in self.members if m.definition), None)


@dataclass(slots=True)
class MergeResult:
    concepts: list[MergedConcept]
    relations: list[SourceRelation]  # head and tail are concept ids
    dropped_self_loops: int
    dropped_dangling: list[SourceRelation]


def merge(
    concepts: Sequence[SourceConcept], relations: Sequence[SourceRelation], source_order: Sequence[str]
) -> MergeResult:
    rank = {s: i for i, s in enumerate(source_order)}
    by_key = {c.key: c for c in concepts}
    uf = _UnionFind()
    first_with: dict[str, str] = {}

    def join_on(token: str, key: str) -> None:
        if token in first_with:
            uf.union(first_with[token], key)
        else:
            first_with[token] = key

    for c in concepts:
        uf.find(c.key)
        for cui in c.cuis:
            join_on(f"cui:{cui}", c.key)
        for xref in c.xrefs:
            if xref in by_key:
                uf.union(xref, c.key)
        for name in {c.name, uninvert(c.name)}:
            if key := name_key(name):  # a name of symbols only ("±") says nothing about identity
                join_on(f"name:{key}", c.key)

    groups: dict[str, list[SourceConcept]] = {}
    for c in concepts:
        groups.setdefault(uf.find(c.key), []).append(c)

    merged: list[MergedConcept] = []
    concept_of: dict[str, str] = {}
    for members in groups.values():
        members.sort(key=lambda m: (rank.get(m.source, len(rank)), m.code))
        cuis = sorted({cui for m in members for cui in m.cuis})
        concept_id = cuis[0] if cuis else members[0].key
        merged.append(MergedConcept(concept_id, members, cuis))
        for m in members:
            concept_of[m.key] = concept_id

    kept: dict[tuple[str, str, str, str], SourceRelation] = {}
    self_loops = 0
    dangling: list[SourceRelation] = []
    for r in relations:
        head, tail = concept_of.get(r.head), concept_of.get(r.tail)
        if head is None or tail is None:
            dangling.append(r)
            continue
        if head == tail:
            self_loops += 1
            continue
        if r.relation == "co_occurs_with" and tail < head:  # symmetric: one edge per pair
            head, tail = tail, head
        key = (head, r.relation, tail, r.source)
        previous = kept.get(key)
        # Two merged source terms may report the same reports: keep the larger support, not the sum.
        if previous is None or (r.support or 0) > (previous.support or 0):
            kept[key] = SourceRelation(head, r.relation, tail, r.source, r.support)
    return MergeResult(merged, list(kept.values()), self_loops, dangling)
