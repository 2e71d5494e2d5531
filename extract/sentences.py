"""Sentence spans of radiology prose, as character offsets into the text they came from.

A sentence ends
- after `.`, `?`, `!` (a run of them, with closing quotes or brackets) followed by whitespace or
  the end of the text, and after `;` followed by whitespace: a semicolon in a report joins two
  statements ("Heart size normal; lungs clear") and a negation must not reach across it;
- at a period glued to the next sentence ("bilaterally.There"): lower-case letter, period,
  capital and lower-case letter;
- at a blank line, and before a numbered list item ("1. ...", "2) ...") that starts a line, or that
  follows in running text with a capital after it ("... disease 2. Changes of ...").

It does not end at decimals and codes ("2.5 cm", "786.2": no space after the period), at the
number of a list item ("1. No acute disease." is one sentence), at abbreviations that never end a
sentence ("e.g.", "i.e.", "vs.", "Dr.", "approx."), at dotted abbreviations ("p.m.", "etc.")
unless a capital follows, nor inside the IU X-ray mask ("chest x-XXXX" is one word;
the period after it ends a sentence like any other).

Spans are stripped of surrounding whitespace; pieces with no letter or digit ("." of "effusion. .")
are dropped, so no span is empty. Splits are cached by the text of the slice (the same sentences
repeat across thousands of reports) and shifted to the slice's offset.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["split_sentences"]

# Abbreviations (lower case, without the final period) after which a sentence never ends.
NEVER_FINAL = frozenset(
    {"e.g", "eg", "i.e", "ie", "vs", "dr", "drs", "mr", "mrs", "ms", "prof", "approx", "apprx", "cf", "fig", "figs",
     "st", "incl", "esp"}
)  # fmt: skip
# Abbreviations after which a sentence ends only when a capital follows ("at 3 p.m. the ..." vs "... etc. No ...").
FINAL_BEFORE_CAPITAL = frozenset({"etc", "al", "sq", "cm", "mm", "ml", "min", "hr", "hrs", "wk", "wks", "yr", "yrs"})

_CANDIDATES = re.compile(
    r"""
      (?P<end>[.!?]+["'\)\]]*)(?=\s|\Z)                   # terminator, then space or the end
    | (?P<semi>;)(?=\s|\Z)
    | (?<=[a-z])(?P<glued>[.!?])(?=[A-Z][a-z])                # "bilaterally.There"
    | (?P<blank>\r?\n[ \t\r]*\n)                              # blank line
    | (?<=\n)[ \t]*(?P<item_line>)\d{1,2}[.)]\s                # list item starting a line
    | (?<=\s)(?P<item>)\d{1,2}[.)]\s+(?=[A-Z]|XXXX)            # list item in running text
    """,
    re.VERBOSE,
)
_LIST_NUMBER = re.compile(r"\d{1,2}|[a-z]")
_DOTTED = re.compile(r"[A-Za-z](?:\.[A-Za-z])+")
_HAS_WORD = re.compile(r"\w")
_SPACE = " \t\r\n\f\v"

CACHE_SIZE = 1 << 16


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text[start:end]`, as offsets into `text`, in order."""
    end = len(text) if end is None else end
    if start == 0 and end == len(text):
        return list(_split(text))
    return [(start + s, start + e) for s, e in _split(text[start:end])]


@lru_cache(maxsize=CACHE_SIZE)
def _split(text: str) -> tuple[tuple[int, int], ...]:
    cuts = [0]
    for m in _CANDIDATES.finditer(text):
        kind = m.lastgroup
        if kind == "end":
            if not _ends_sentence(text, m, cuts[-1]):
                continue
            cut = m.end()
        elif kind in ("semi", "glued"):
            cut = m.end()
        elif kind == "blank":
            cut = m.start()
        else:  # a list item starts a new sentence at its number
            cut = m.start(kind)
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(len(text))

    spans = []
    for a, b in zip(cuts, cuts[1:]):
        while a < b and text[a] in _SPACE:
            a += 1
        while b > a and text[b - 1] in _SPACE:
            b -= 1
        if a < b and _HAS_WORD.search(text, a, b):
            spans.append((a, b))
    return tuple(spans)


def _ends_sentence(text: str, m: re.Match[str], sentence_start: int) -> bool:
    """Whether the terminator of candidate `m` ends the sentence that began at `sentence_start`."""
    at = m.start()
    space = max(text.rfind(" ", sentence_start, at), text.rfind("\n", sentence_start, at), text.rfind("\t", sentence_start, at))
    word_start = space + 1 if space >= 0 else sentence_start
    word = text[word_start:at].lstrip("([{\"'")
    if m.group("end")[0] != ".":
        return bool(word)  # " ? pneumonia" asks, it does not end
    lowered = word.lower()
    if lowered in NEVER_FINAL:
        return False
    if _LIST_NUMBER.fullmatch(word) and not text[sentence_start:word_start].strip():
        return False  # the number of a list item: "1. No acute disease."
    if lowered in FINAL_BEFORE_CAPITAL or _DOTTED.fullmatch(word):
        following = text[m.end() : m.end() + 64].lstrip()
        return not following or following[0].isupper()
    return True
