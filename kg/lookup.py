"""Rank concepts for a free-text name: exact names first, then near misses.

Keys are `name_key`s, so case, punctuation and plurals never matter; rapidfuzz scores
misspellings ("pleural efusion") against every distinct key in C++.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, process

from .atomic import atomic_open
from .errors import InputError
from .normalize import name_key

PREFERRED, SYNONYM = 100.0, 98.0  # an exact preferred name beats an exact synonym
FUZZY_WEIGHT = 0.95  # a near miss never outranks an exact hit
CACHE_VERSION = 1  # of the file `NameIndex.save` writes
CACHE_SCHEMA = pa.schema([("id", pa.string()), ("name", pa.string()), ("weight", pa.int64()),
                          ("strings", pa.list_(pa.string())), ("keys", pa.list_(pa.string()))])


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
        self.strings: dict[str, tuple[list[str], list[str]]] = {}  # id -> ([preferred name, *synonyms], their keys)
        self.by_key: dict[str, list[tuple[str, str, bool]]] = {}  # key -> [(id, string, preferred)]
        for cid, name, synonyms, weight in concepts:
            strings = [name, *(synonyms or ())]
            self._add(cid, name, weight, strings, [name_key(string) for string in strings])
        self.keys = list(self.by_key)
        self._folded_ids: dict[str, str] | None = None  # casefolded id -> id, built on first use

    def _add(self, cid: str, name: str, weight: int, strings: list[str], keys: list[str]) -> None:
        self.names[cid] = name
        self.weight[cid] = weight
        self.strings[cid] = (strings, keys)
        for i, (string, key) in enumerate(zip(strings, keys, strict=True)):
            if key:
                self.by_key.setdefault(key, []).append((cid, string, i == 0))

    def save(self, path: Path, stamp: str) -> None:
        """Write the index as an Arrow file (data only: reading it back cannot run code), atomically.

        `stamp` names the state of what the index was built from; `load` gives the index back only for the same stamp."""
        ids = list(self.names)
        table = pa.table({
            "id": pa.array(ids, pa.string()), "name": pa.array([self.names[c] for c in ids], pa.string()),
            "weight": pa.array([self.weight[c] for c in ids], pa.int64()),
            "strings": pa.array([self.strings[c][0] for c in ids], pa.list_(pa.string())),
            "keys": pa.array([self.strings[c][1] for c in ids], pa.list_(pa.string())),
        }).replace_schema_metadata({"version": str(CACHE_VERSION), "stamp": stamp, "rows": str(len(ids))})
        with atomic_open(path, "wb") as handle, pa.ipc.new_file(handle, table.schema) as writer:
            writer.write_table(table)

    @classmethod
    def load(cls, path: Path, stamp: str) -> NameIndex | None:
        """The index `save` wrote for this `stamp`; None when the file is missing, damaged, of another version or stamp."""
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            if (meta.get("version"), meta.get("stamp"), meta.get("rows")) != (str(CACHE_VERSION), stamp, str(table.num_rows)) \
                    or not table.schema.equals(CACHE_SCHEMA) or any(column.null_count for column in table.columns):
                return None
            index = cls(())
            ids, strings, keys = (table[name].combine_chunks() for name in ("id", "strings", "keys"))
            if not pc.all(pc.equal(pc.list_value_length(strings), pc.list_value_length(keys))).as_py():
                return None
            index.names = dict(zip(ids.to_pylist(), table["name"].to_pylist(), strict=True))
            index.weight = dict(zip(ids.to_pylist(), table["weight"].to_pylist(), strict=True))
            index.strings = dict(zip(ids.to_pylist(), zip(strings.to_pylist(), keys.to_pylist(), strict=True), strict=True))
            # One entry per string, in the order the constructor adds them: the first string of each concept is preferred.
            owner = pc.take(ids, pc.list_parent_indices(strings)).to_pylist()
            first = pc.subtract(pa.array(range(len(strings.flatten())), pa.int64()),
                                pc.take(strings.offsets, pc.list_parent_indices(strings))).to_pylist()
            for cid, string, key, position in zip(owner, strings.flatten().to_pylist(), keys.flatten().to_pylist(), first, strict=True):
                if key:
                    index.by_key.setdefault(key, []).append((cid, string, position == 0))
        except (OSError, ValueError, TypeError, pa.ArrowException):  # truncated, crafted, not Arrow at all
            return None
        index.keys = list(index.by_key)
        return index

    def __len__(self) -> int:
        return len(self.names)

    def concept_id(self, text: str) -> str | None:
        """The id of a concept written as its id in any case ("radlex:rid34539" for RADLEX:RID34539), or None."""
        if text in self.names:
            return text
        if self._folded_ids is None:
            self._folded_ids = {}
            for cid in self.names:
                self._folded_ids.setdefault(cid.casefold(), cid)
        return self._folded_ids.get(text.casefold())

    def search(self, text: str, limit: int = 10) -> list[Hit]:
        """The `limit` best concepts for `text`, best first.

        Every key is scored by the final score before the list is cut, so the first k hits are the same
        whatever `limit` (>= k) is asked for."""
        if limit < 1:
            raise InputError(f"limit must be at least 1, got {limit}")
        key = name_key(text)
        if not key:
            return []
        best: dict[str, Hit] = {}

        def offer(cid: str, string: str, score: float) -> None:
            if cid not in best or score > best[cid].score:
                best[cid] = Hit(cid, self.names[cid], round(score, 2), string)

        for cid, string, preferred in self.by_key.get(key, ()):
            offer(cid, string, PREFERRED if preferred else SYNONYM)
        # WRatio rewards partial matches; blended with plain ratio, a closer whole name wins. Both run in C++
        # over every key; keys are then offered best first until `limit` concepts are certain, ties included.
        wratio = process.cdist([key], self.keys, scorer=fuzz.WRatio, dtype=np.float64, score_cutoff=60, workers=1)[0]
        near = np.flatnonzero(wratio >= 60)
        ratio = process.cdist([key], [self.keys[i] for i in near], scorer=fuzz.ratio, dtype=np.float64, workers=1)[0]
        blended = FUZZY_WEIGHT * (0.5 * wratio[near] + 0.5 * ratio)
        cut = None  # the limit-th best score once `limit` concepts are found; lower keys cannot change the answer
        for i in np.argsort(-blended, kind="stable"):
            candidate, score = self.keys[near[i]], float(blended[i])
            if cut is not None and round(score, 2) < cut:
                break
            if candidate == key:
                continue
            for cid, string, _preferred in self.by_key[candidate]:
                offer(cid, string, score)
            if cut is None and len(best) >= limit:
                cut = sorted((h.score for h in best.values()), reverse=True)[limit - 1]
        ranked = sorted(best.values(), key=lambda h: (-h.score, -self.weight[h.id], len(h.name), h.id))
        return ranked[:limit]
