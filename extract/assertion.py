"""ConText-style assertion of concept mentions in radiology sentences: present, absent or uncertain.

A sentence is tokenised once (words, numbers, single punctuation marks; lower-cased) and scanned once
for trigger phrases from `extract.lexicon` (leftmost, longest match first, so a pseudo-trigger such as
"no increase" or "not only" wins over the "no"/"not" it contains).  Each negation or uncertainty trigger
then gets a scope, computed once per sentence; asserting a mention only looks its tokens up against
those scopes, so every mention of a sentence reuses one scan.

Scope.  A forward trigger covers the words after it, a backward trigger the words before it, a
bidirectional one both.  A mention is covered when its first token lies in a forward scope or its last
token in a backward scope; a trigger overlapping the mention itself is ignored.  A scope ends at

* the sentence end (".", "!", "?" outside a trigger phrase), also inside one `sentence()` text, so
  "No effusion. Cardiomegaly is present." keeps the cardiomegaly;
* a terminator ("but", "however", "though", "which", "otherwise", "except", ";" ...);
* a negation or uncertainty trigger of the other category (ConText's rule; same-category triggers and
  pseudo-triggers do not end it);
* for bidirectional triggers ("versus", "borderline", "questionable", "resolved") also a comma, and
  looking back at most `BIDIRECTIONAL_BACKWARD_SCOPE` (3) words: they qualify the noun phrase next to
  them ("Cardiomegaly with mild bibasilar infiltrates versus atelectasis" leaves the cardiomegaly);
* `max_scope` words (punctuation and the cue's own words not counted); default `DEFAULT_MAX_SCOPE` = 15.
  Measured on IU X-ray (every FINDINGS/IMPRESSION mention of 15 findings, scored per report against
  IU's manual MeSH indexing; present/absent agreement): 5 words (NegEx) 0.886, 8 0.988, 9 0.990,
  10 0.994, 15 0.994, whole sentence 0.994.  NegEx's 5 cuts IU's templated lists ("No focal
  consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax is identified"
  has its last item 9 words after "No"); going from 10 to 15 flips 8 mentions, 5 of them for the
  better on reading; 15 to whole sentence flips 2 (one wrong), so 15 keeps ConText's behaviour on
  radiology sentences while bounding run-on ones.

Priority.  When several triggers cover one mention the nearest one (fewest words between trigger and
mention) decides; on a tie, uncertain wins over negated (two cues that contradict at the same distance
leave the finding in doubt).  Nearest-wins is what makes "No pneumothorax, possible small effusion" and
"Possible small effusion, no pneumothorax" both come out right, and "No effusion, pneumonia cannot be
excluded" split into absent and uncertain.  One exception is made before scoping: an uncertainty cue
that links evidence to a diagnosis ("to suggest", "suspicious for", "concerning for" — phrases ending
in a preposition or a linking verb, see `_RELATIONAL_LAST`, and not led by a modal) that lies inside a
forward negation's scope is part of what is negated, so it is dropped: "No focal opacity to suggest
pneumonia" and "no findings suspicious for malignancy" are negations (NegBio's "no NN to suggest XXX"
pattern), not hedges.  A modal-led cue ("may represent") starts a clause of its own and is kept:
"Without comparison, this may represent infection" is uncertain.

"No definite X" is absent (NegBio's reading, not CheXpert's "uncertain"): IU X-ray's manual MeSH
indexing, made from the same reports, indexes the finding in only 1 of the 100 reports that say "no
definite pleural effusion".  "Consistent with" and "compatible with" are not cues (the finding is
present, as in CheXpert): IU's indexers annotate the finding in 30 of 31 and 29 of 37 reports that use
them for it, against 0 of 29 for "may represent".

Each result carries the deciding cue as written in the sentence (`AssertionResult.trigger`), or None
for a present finding that no cue covers.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from extract.lexicon import (
    BACKWARD,
    BIDIRECTIONAL,
    FORWARD,
    NEGATED,
    NONE,
    PSEUDO,
    SUPPLEMENT,
    TERMINATE,
    TOKEN_RE,
    UNCERTAIN,
    Trigger,
    load_triggers,
)
from extract.model import AssertionResult
from kg.atomic import atomic_open
from kg.problems import ProblemLog

DEFAULT_MAX_SCOPE = 15
# Bidirectional cues ("versus", "borderline", "resolved") qualify the noun phrase next to them; looking
# back they reach only this far ("Cardiomegaly with mild bibasilar infiltrates versus atelectasis": the
# cardiomegaly is not in doubt).  On IU, 3 instead of 5 changed 10 mentions, 9 of them for the better.
BIDIRECTIONAL_BACKWARD_SCOPE = 3
_SENTENCE_END = frozenset({".", "!", "?"})
_CLAUSE_MARK = ","
# Last words of uncertainty cues that relate a finding to an interpretation; inside a negation's scope
# such a cue is negated with the rest ("no opacity to suggest pneumonia").
_RELATIONAL_LAST = frozenset(
    {
        "for", "of", "with", "about", "to",
        "suggest", "suggests", "suggesting", "suggested",
        "represent", "represents", "representing",
        "reflect", "reflects", "reflecting",
        "indicate", "indicates", "indicating",
        "include", "includes", "including",
    }
)  # fmt: skip
# A cue led by a modal ("may represent", "could be") is a clause of its own: "Without comparison, this
# may represent pneumonia" is a hedge, not part of the negation before it.
_MODALS = frozenset({"may", "might", "could", "can", "would", "should", "must", "will"})
_PRESENT = AssertionResult("present", None)
_ASSERTION = {NEGATED: "absent", UNCERTAIN: "uncertain"}
# Category of a trigger whose scope is computed (the rest are pseudo or terminate).
_SCOPED = (NEGATED, UNCERTAIN)


@dataclass(frozen=True, slots=True)
class TriggerMatch:
    """A trigger found in a sentence: token span [start, end), character span, and its scopes."""

    rule: Trigger
    start: int  # first token
    end: int  # one past the last token
    char_start: int
    char_end: int
    text: str  # as written in the sentence
    forward_end: int  # tokens [end, forward_end) are in its forward scope (== end when none)
    backward_start: int  # tokens [backward_start, start) are in its backward scope (== start when none)

    @property
    def category(self) -> str:
        return self.rule.category


class ScannedSentence:
    """One sentence tokenised and scanned for triggers; asserts any number of mentions in it."""

    __slots__ = ("text", "_starts", "_ends", "_wordpos", "triggers", "_scoped")

    def __init__(self, text: str, starts: list[int], ends: list[int], wordpos: list[int], triggers: list[TriggerMatch]):
        self.text = text
        self._starts = starts
        self._ends = ends
        self._wordpos = wordpos  # word tokens before token i (len = tokens + 1)
        self.triggers = triggers  # every trigger found, pseudo and terminators included
        self._scoped = [
            t for t in triggers if t.rule.category in _SCOPED and (t.forward_end > t.end or t.backward_start < t.start)
        ]

    def assertion(self, start: int, end: int) -> AssertionResult:
        """Assert the mention at characters [start, end) of this sentence's text."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"mention span [{start}, {end}) is empty or outside the sentence (length {len(self.text)})")
        if not self._scoped:
            return _PRESENT
        m_start = bisect.bisect_right(self._ends, start)  # first token ending after `start`
        m_end = bisect.bisect_left(self._starts, end)  # tokens starting before `end`
        if m_end <= m_start:  # a span of whitespace only
            return _PRESENT
        wordpos = self._wordpos
        best: TriggerMatch | None = None
        best_key = (0, 0)
        for t in self._scoped:
            if t.start < m_end and m_start < t.end:  # the cue is part of the mention itself
                continue
            if t.end <= m_start < t.forward_end:
                distance = wordpos[m_start] - wordpos[t.end]
            elif t.backward_start < m_end <= t.start:
                distance = wordpos[t.start] - wordpos[m_end]
            else:
                continue
            key = (distance, 0 if t.rule.category == UNCERTAIN else 1)
            if best is None or key < best_key:
                best, best_key = t, key
        if best is None:
            return _PRESENT
        return AssertionResult(_ASSERTION[best.rule.category], best.text)


class AssertionEngine:
    """Trigger rules compiled once; `sentence()` scans a sentence, `ScannedSentence.assertion` asserts."""

    def __init__(self, triggers: Iterable[Trigger], max_scope: int = DEFAULT_MAX_SCOPE):
        if max_scope < 1:
            raise ValueError("max_scope must be at least 1")
        self.max_scope = max_scope
        self.rules: list[Trigger] = list(triggers)
        # A token trie: token -> [children, rule ending here or None]; walking it finds the longest match.
        trie: dict[str, list] = {}
        for rule in self.rules:
            children = trie
            for tok in rule.phrase[:-1]:
                children = children.setdefault(tok, [{}, None])[0]
            children.setdefault(rule.phrase[-1], [{}, None])[1] = rule
        self._trie = trie

    @classmethod
    def from_lexicons(
        cls, lexicon_dir: Path, supplement: Path | None = SUPPLEMENT, max_scope: int = DEFAULT_MAX_SCOPE
    ) -> AssertionEngine:
        """Build from a `shared/data/lexicons`-layout folder plus medkg's supplement (see `extract.lexicon`)."""
        return cls(load_triggers(Path(lexicon_dir), supplement), max_scope)

    def sentence(self, text: str) -> ScannedSentence:
        low = text.lower()
        if len(low) != len(text):  # a character whose lower case is longer: keep offsets of `text`
            low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        if "\u2019" in low:  # typographic apostrophe: "isn’t" reads as "isn't"
            low = low.replace("\u2019", "'")
        starts: list[int] = []
        ends: list[int] = []
        words: list[str] = []
        for m in TOKEN_RE.finditer(low):
            starts.append(m.start())
            ends.append(m.end())
            words.append(m.group())
        n = len(words)
        wordpos = [0] * (n + 1)
        count = 0
        for i, w in enumerate(words):
            wordpos[i] = count
            if w[0].isalnum():
                count += 1
        wordpos[n] = count

        # Scan once: leftmost, longest match.
        trie = self._trie
        found: list[tuple[int, int, Trigger]] = []
        i = 0
        while i < n:
            node = trie.get(words[i])
            if node is None:
                i += 1
                continue
            best_end, best_rule = (i + 1, node[1]) if node[1] is not None else (i, None)
            j = i + 1
            children = node[0]
            while j < n and children:
                node = children.get(words[j])
                if node is None:
                    break
                j += 1
                if node[1] is not None:
                    best_end, best_rule = j, node[1]
                children = node[0]
            if best_rule is None:
                i += 1
            else:
                found.append((i, best_end, best_rule))
                i = best_end
        if not found:
            return ScannedSentence(text, starts, ends, wordpos, [])

        # What stops a scope at token i: sentence ends outside triggers, terminators, scoped triggers.
        owner: list[int] = [-1] * n  # index into `found` of the trigger starting at token i
        inside = [False] * n
        for k, (s, e, _rule) in enumerate(found):
            owner[s] = k
            for j in range(s, e):
                inside[j] = True
        end_mark = [w in _SENTENCE_END and not inside[j] for j, w in enumerate(words)]
        for s, e, rule in found:  # a trigger that is only the end mark ("?") still ends the sentence
            if e - s == 1 and words[s] in _SENTENCE_END:
                end_mark[s] = True
        categories = [rule.category for _s, _e, rule in found]

        max_scope = self.max_scope
        bidi_back = min(max_scope, BIDIRECTIONAL_BACKWARD_SCOPE)

        def scan(k: int, step: int, comma_stops: bool, transparent: frozenset[int]) -> int:
            """Token index where trigger k's scope stops, walking forward (step 1) or backward (-1)."""
            s, e, rule = found[k]
            cat = rule.category
            j = e if step == 1 else s - 1
            limit_lo = wordpos[e] if step == 1 else wordpos[s]
            reach = bidi_back if (comma_stops and step == -1) else max_scope
            while 0 <= j < n:
                if end_mark[j] or (comma_stops and words[j] == _CLAUSE_MARK):
                    break
                o = owner[j] if step == 1 else _owner_ending_at(j)
                if o >= 0 and o != k and o not in transparent:
                    ocat = categories[o]
                    if ocat == TERMINATE or (ocat in _SCOPED and ocat != cat):
                        break
                distance = (wordpos[j] - limit_lo) if step == 1 else (limit_lo - wordpos[j + 1])
                if distance >= reach:
                    break
                j += step
            return j

        ends_at: dict[int, int] = {e - 1: k for k, (s, e, _r) in enumerate(found)}

        def _owner_ending_at(j: int) -> int:
            return ends_at.get(j, -1)

        # Relational uncertainty cues inside a forward negation's scope are part of the negated claim.
        transparent: frozenset[int] = frozenset()
        relational = [
            k for k, (s, e, rule) in enumerate(found)
            if rule.category == UNCERTAIN and rule.phrase[-1] in _RELATIONAL_LAST and rule.phrase[0] not in _MODALS
        ]  # fmt: skip
        if relational:
            rel = frozenset(relational)
            neg_scopes = [
                (e, scan(k, 1, rule.direction == BIDIRECTIONAL, rel))
                for k, (s, e, rule) in enumerate(found)
                if rule.category == NEGATED and rule.direction in (FORWARD, BIDIRECTIONAL)
            ]
            transparent = frozenset(k for k in relational if any(lo <= found[k][0] < hi for lo, hi in neg_scopes))
            if transparent:
                categories = [PSEUDO if k in transparent else c for k, c in enumerate(categories)]

        matches: list[TriggerMatch] = []
        for k, (s, e, rule) in enumerate(found):
            fwd_end, bwd_start = e, s
            if rule.category in _SCOPED and k not in transparent:
                bidi = rule.direction == BIDIRECTIONAL
                if rule.direction in (FORWARD, BIDIRECTIONAL):
                    fwd_end = scan(k, 1, bidi, transparent)
                if rule.direction in (BACKWARD, BIDIRECTIONAL):
                    bwd_start = scan(k, -1, bidi, transparent) + 1
            if k in transparent:
                rule = Trigger(rule.phrase, PSEUDO, NONE, rule.source)
            cs, ce = starts[s], ends[e - 1]
            matches.append(TriggerMatch(rule, s, e, cs, ce, text[cs:ce], fwd_end, bwd_start))
        return ScannedSentence(text, starts, ends, wordpos, matches)

    def assert_phrase(self, sentence: str, target: str) -> AssertionResult:
        """Assert the first case-insensitive occurrence of `target` in `sentence`; ValueError if absent."""
        if not target.strip():
            raise ValueError("empty target phrase")
        at = sentence.lower().find(target.lower())
        if at < 0 or len(sentence.lower()) != len(sentence):
            at = _find_casefold(sentence, target)
        if at < 0:
            raise ValueError(f"target {target!r} not found in sentence {sentence!r}")
        return self.sentence(sentence).assertion(at, at + len(target))


def _find_casefold(sentence: str, target: str) -> int:
    """Offset of `target` in `sentence` ignoring case, robust to characters whose case changes length."""
    n = len(target)
    t = target.casefold()
    for i in range(len(sentence) - n + 1):
        if sentence[i : i + n].casefold() == t:
            return i
    return -1


TSV_HEADER = ("id", "target", "sentence")


def write_assertions_tsv(in_path: Path, out_path: Path, engine: AssertionEngine, problems: ProblemLog | None = None) -> int:
    """Assert each `id<TAB>target<TAB>sentence` row of `in_path`; write `id<TAB>assertion` to `out_path`.

    The first line is the header.  A malformed row (not exactly 3 columns, an empty id or target, or a
    target that does not occur in its sentence) is reported to `problems` with its file and line and
    written with an empty assertion, so the output keeps one row per input row and a scorer counts it
    as a miss instead of silently scoring fewer rows (a row without even an id is only reported);
    blank lines are skipped.  A first line that is not the `id, target, sentence` header is reported
    and, when it has 3 columns, read as data.  The output goes to a temporary file beside `out_path`
    that is moved into place only when all went well (`kg.atomic.atomic_open`), so a failed run (a
    missing input, a strict `ProblemLog`) never leaves a partial file.  Returns the number of rows asserted.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    problems = problems if problems is not None else ProblemLog()
    with open(in_path, encoding="utf-8-sig", newline="") as src, atomic_open(out_path, "w", encoding="utf-8", newline="\n") as out:
        return _assert_rows(src, out, in_path, engine, problems)


def _assert_rows(src, out, in_path: Path, engine: AssertionEngine, problems: ProblemLog) -> int:
    out.write("id\tassertion\n")
    asserted = 0
    lineno = 0
    for lineno, raw in enumerate(src, 1):
        line = raw.rstrip("\r\n")
        fields = line.split("\t")
        if lineno == 1:
            if tuple(f.strip().lower() for f in fields) == TSV_HEADER:
                continue
            problems.report(in_path, 1, "header", f"expected the header 'id<TAB>target<TAB>sentence', got {line[:80]!r}")
            if len(fields) != 3:
                continue
        if not line.strip():
            continue
        row_id = fields[0].strip()
        if len(fields) != 3:
            problems.report(in_path, lineno, "column count", f"expected 3 tab-separated columns, got {len(fields)}")
        elif not row_id or not fields[1].strip():
            problems.report(in_path, lineno, "empty field", "empty id or target")
        else:
            target, sentence = fields[1].strip(), fields[2]
            try:
                result = engine.assert_phrase(sentence, target)
            except ValueError:
                problems.report(in_path, lineno, "target not in sentence", f"{target[:60]!r} does not occur in {sentence[:80]!r}")
            else:
                out.write(f"{row_id}\t{result.assertion}\n")
                asserted += 1
                continue
        if row_id:
            out.write(f"{row_id}\t\n")
    if lineno == 0:
        problems.report(in_path, None, "empty", "no header and no rows")
    return asserted
