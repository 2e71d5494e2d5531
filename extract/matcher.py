"""Find concept mentions in a sentence: radiology phrase rules, then exact dictionary n-grams
(longest first), then approximate QuickUMLS simstring look-ups for words the dictionary lacks.

The exact path answers almost every mention from one dict look-up per n-gram; simstring,
the expensive part of plain QuickUMLS, only runs around out-of-vocabulary words.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from kg.normalize import name_key, singular

from .index import ConceptIndex, stopwords

WORD = re.compile(r"[A-Za-z0-9]+")
MASK = "xxxx"  # IU X-ray de-identification: never part of a term
MAX_WINDOW = 8  # longest n-gram tried; longer index terms do not occur in report prose
FUZZY_WINDOW = 3
SIMSTRING_THRESHOLD = 0.4  # cheap (~0.3 ms a look-up) and catches transpositions: pnuemothorax
# A misspelling is one slip (two in a long phrase): larger edits turn real words into other terms
# (position -> deposition, hyperinflation -> hypoinflation, stability -> instability).
LONG_PHRASE = 20
CACHE_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class Match:
    concept_id: str
    start: int
    end: int
    similarity: float
    assertion: str | None = None  # set by a phrase rule that decides it ("heart size is normal")
    trigger: str | None = None


@dataclass(frozen=True, slots=True)
class PhraseRule:
    pattern: re.Pattern[str]
    concept_id: str | None  # None: the phrase names no concept and keeps its words from matching one
    assertion: str | None


def load_phrase_rules(index: ConceptIndex) -> list[PhraseRule]:
    """Rules in extract/data/radiology_phrases.tsv name concepts; the index resolves the names."""
    rules = []
    text = files("extract").joinpath("data/radiology_phrases.tsv").read_text(encoding="utf-8")
    for row in csv.DictReader(line for line in text.splitlines() if not line.startswith("#")):
        if not row["concept"]:  # a phrase that names no finding: its words are taken, no mention is made
            rules.append(PhraseRule(re.compile(row["pattern"], re.IGNORECASE), None, None))
            continue
        concept_id = index.resolve(row["concept"])
        if concept_id is not None:  # a graph without that concept simply has no such rule
            rules.append(PhraseRule(re.compile(row["pattern"], re.IGNORECASE), concept_id, row["assertion"] or None))
    return rules


@lru_cache(maxsize=1 << 16)
def _norm(word: str) -> str:
    return singular(word.lower())


class ConceptMatcher:
    def __init__(self, index: ConceptIndex, threshold: float = 0.88, fuzzy: bool = True):
        self.index = index
        self.terms = index.terms
        self.stop = stopwords()
        self.rules = load_phrase_rules(index)
        self.threshold = threshold
        self._simstring = None
        self._near: dict[str, tuple[float, str] | None] = {}  # phrase -> best accepted candidate
        self.fuzzy = fuzzy

    def _nearest(self, phrase: str) -> tuple[float, str] | None:
        """The closest index term within one slip of `phrase`, cached: reports repeat their misspellings."""
        if phrase in self._near:
            return self._near[phrase]
        best = None
        max_edits = 1 if len(phrase) <= LONG_PHRASE else 2
        for candidate in self._candidates(phrase):
            score = fuzz.ratio(phrase, candidate) / 100
            if score >= self.threshold and OSA.distance(phrase, candidate) <= max_edits and (best is None or score > best[0]):
                best = (score, candidate)
        if len(self._near) >= CACHE_LIMIT:
            self._near.clear()
        self._near[phrase] = best
        return best

    def _candidates(self, phrase: str) -> tuple[str, ...]:
        """QuickUMLS's simstring database, read with pysimstring directly: importing quickumls
        itself costs 2.4 s (spaCy) in every worker. Trigram Jaccard only proposes candidates;
        the edit-distance ratio decides."""
        if self._simstring is None:
            from pysimstring import simstring

            self._simstring = simstring.reader(str(self.index.simstring_path / "umls-terms.simstring"))
            self._simstring.measure = simstring.jaccard
            self._simstring.threshold = SIMSTRING_THRESHOLD
        return self._simstring.retrieve(unicodedata.normalize("NFKD", phrase))

    def match(self, text: str, start: int = 0, end: int | None = None) -> list[Match]:
        """Non-overlapping matches in text[start:end], in text order."""
        end = len(text) if end is None else end
        found: list[Match] = []
        taken: list[tuple[int, int]] = []
        for rule in self.rules:
            for m in rule.pattern.finditer(text, start, end):
                if any(a < m.end() and m.start() < b for a, b in taken):
                    continue
                taken.append((m.start(), m.end()))
                if rule.concept_id is None:
                    continue
                trigger = m.group("cue") if rule.assertion and "cue" in rule.pattern.groupindex else None
                found.append(Match(rule.concept_id, m.start("term"), m.end("term"), 1.0, rule.assertion, trigger))
        tokens = [(m.start(), m.end(), _norm(m.group())) for m in WORD.finditer(text, start, end)]
        tokens = [t for t in tokens if not any(a <= t[0] < b for a, b in taken)] if taken else tokens
        covered = self._exact(text, tokens, found)
        if self.fuzzy:
            self._approximate(text, tokens, covered, found)
        found.sort(key=lambda m: m.start)
        return found

    def _exact(self, text: str, tokens: list[tuple[int, int, str]], found: list[Match]) -> list[bool]:
        norms = [t[2] for t in tokens]
        covered = [False] * len(tokens)
        n, i = len(tokens), 0
        while i < n:
            if norms[i] in self.stop or norms[i] == MASK:
                i += 1
                continue
            for length in range(min(MAX_WINDOW, n - i), 0, -1):
                last = i + length - 1
                if norms[last] in self.stop:
                    continue
                window = norms[i : i + length]
                if MASK in window:
                    continue
                ids = self.terms.get(" ".join(window))
                if ids:
                    found.append(Match(ids[0], tokens[i][0], tokens[last][1], 1.0))
                    covered[i : i + length] = [True] * length
                    i += length
                    break
            else:
                i += 1
        return covered

    def _approximate(self, text: str, tokens: list[tuple[int, int, str]], covered: list[bool], found: list[Match]) -> None:
        """Misspellings: try windows around each word the index has never seen."""
        vocabulary = self.index.vocabulary
        for i, (_, _, norm) in enumerate(tokens):
            if covered[i] or norm in vocabulary or norm in self.stop or norm == MASK or len(norm) < 4 or not norm.isalpha():
                continue
            best: tuple[float, int, int, str] | None = None
            for lo in range(max(0, i - FUZZY_WINDOW + 1), i + 1):
                for hi in range(i + 1, min(len(tokens), lo + FUZZY_WINDOW) + 1):
                    window = [t[2] for t in tokens[lo:hi]]
                    if any(covered[lo:hi]) or MASK in window or window[0] in self.stop or window[-1] in self.stop:
                        continue
                    near = self._nearest(text[tokens[lo][0] : tokens[hi - 1][1]].lower())
                    if near is not None and (best is None or near[0] > best[0]):
                        best = (near[0], lo, hi, near[1])
            if best is not None:
                score, lo, hi, candidate = best
                ids = self.terms.get(name_key(candidate))
                if ids:
                    found.append(Match(ids[0], tokens[lo][0], tokens[hi - 1][1], round(score, 3)))
                    covered[lo:hi] = [True] * (hi - lo)
