"""Sections of a free-text radiology report: FINDINGS, IMPRESSION, INDICATION, COMPARISON, HISTORY, TECHNIQUE, OTHER.

Section titles come from the lexicons (NegBio's `negbio/patterns/section_titles.txt`, mined from
MIMIC-CXR, and the titles ending in ":" of medspaCy's `medspacy/section_patterns.json`), read at
run time; `canonical_name` maps each title to one of the canonical names above, typos included
("IMPRESION", "FINDNGS"), and anything it does not know to OTHER.

A title counts where it starts a line (after spaces or tabs), written as in the lexicon (MIMIC-CXR
titles are upper case), and is followed by ":" ("FINDINGS:", " INDICATION:  ___F with cough").
An upper-case title of a known section also counts inside a paragraph, right after the end of a
sentence ("... normal in size. IMPRESSION: No pneumothorax."), where reports written as one
paragraph put it. NegBio's "FINAL REPORT" header needs no colon. Titles are matched by one compiled regex.

Offsets: a section's `start` is where its body begins (after the title, the colon and the
whitespace after them), its `end` is where the next title starts, less the whitespace before it
(or the end of the text). So `text[s.start:s.end]` is exactly the body, sections are in text order
and do not overlap, and what lies between them is titles and whitespace only. Text before the first
title is an OTHER section. Sections with an empty body ("FINAL REPORT" followed by another title)
are left out, so no section is empty; a text with no words has no sections.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from extract.model import Section
from kg.errors import MissingInputError
from kg.paths import default_data_dir

__all__ = ["CANONICAL", "SectionSplitter", "canonical_name", "default_lexicon_dir", "default_splitter", "split_sections"]

CANONICAL = ("FINDINGS", "IMPRESSION", "INDICATION", "COMPARISON", "HISTORY", "TECHNIQUE", "OTHER")
NEGBIO_TITLES = Path("negbio/patterns/section_titles.txt")
MEDSPACY_SECTIONS = Path("medspacy/section_patterns.json")
HEADER = "FINAL REPORT"  # NegBio's one title without a colon

# Whole titles whose words would mislead the keyword rules below.
EXACT = {
    "FINAL REPORT": "OTHER",
    "PRELIMINARY REPORT": "OTHER",
    "REPORT": "OTHER",
    "WET READ": "OTHER",
    "WETREAD": "OTHER",
    "PLEASE CALL WITH WET READ": "OTHER",
    "FOR THIS EXAMINATION": "INDICATION",  # the tail of "REASON FOR THIS EXAMINATION"
    "CLINICAL INFORMATION": "INDICATION",
    "MEDICAL CONDITION": "HISTORY",
    "UNDERLYING MEDICAL CONDITION": "HISTORY",
    "TECHNIQUE AND FINDINGS": "FINDINGS",
    "CONTRAINDICATIONS FOR IV CONTRAST": "TECHNIQUE",
    "FLUOROSCOPY TIME AND DOSE": "TECHNIQUE",
    "OF DOSE": "TECHNIQUE",
    "ON EXAM": "OTHER",
}
# Keyword rules, first match wins: (canonical name, keywords). A title word matches a keyword of
# 7 letters or more within one edit (insertion, deletion, substitution or transposition).
KEYWORDS: tuple[tuple[str, frozenset[str]], ...] = (
    # Titles of clinical notes (medspaCy) that share words with radiology titles: "MEDICATIONS PRIOR TO ADMISSION".
    ("OTHER", frozenset({"MEDICATIONS", "MEDICATION", "PHYSICAL", "ALLERGIES", "DISCHARGE", "LABS"})),
    ("FINDINGS", frozenset({"FINDINGS", "FINDING"})),
    ("IMPRESSION", frozenset({"IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS", "OPINION"})),
    ("INDICATION", frozenset({"INDICATION", "INDICATIONS", "REASON", "TRIGGER"})),
    ("COMPARISON", frozenset({"COMPARISON", "COMPARISONS", "COMPARE", "PRIOR", "REFERENCE"})),
    ("HISTORY", frozenset({"HISTORY", "ILLNESS", "HX", "HPI", "PMH", "PMHX", "MHX"})),
    ("TECHNIQUE", frozenset({"TECHNIQUE", "EXAMINATION", "EXAM", "PROCEDURE", "CONTRAST", "IMAGING"})),
    # Views of the chest: MIMIC-CXR writes the read under them ("PA AND LATERAL VIEWS OF THE CHEST: Heart size ...").
    ("FINDINGS", frozenset({
        "CHEST", "VIEW", "VIEWS", "RADIOGRAPH", "RADIOGRAPHS", "FILM", "FILMS", "IMAGES", "PORTABLE", "SUPINE",
        "UPRIGHT", "ERECT", "SEMIERECT", "SEMISUPINE", "AP", "PA", "LATERAL", "FRONTAL", "CXR",
    })),
)  # fmt: skip
_FUZZY_MIN = 7


def canonical_name(title: str) -> str:
    """The canonical section name of a title as written ("Clinical History:" -> HISTORY, "IMPRESION" -> IMPRESSION)."""
    return _canonical(" ".join(title.upper().rstrip(": \t").replace("/", " ").split()))


@lru_cache(maxsize=4096)
def _canonical(title: str) -> str:
    if title in EXACT:
        return EXACT[title]
    words = title.split()
    for name, keywords in KEYWORDS:
        for word in words:
            if word in keywords or (len(word) >= _FUZZY_MIN - 1 and any(_within_one(word, k) for k in keywords)):
                return name
    return "OTHER"


def _within_one(word: str, keyword: str) -> bool:
    """Optimal string alignment distance <= 1, for keywords of `_FUZZY_MIN` letters or more."""
    if len(keyword) < _FUZZY_MIN or abs(len(word) - len(keyword)) > 1:
        return False
    if len(word) == len(keyword):
        diff = [i for i, (a, b) in enumerate(zip(word, keyword)) if a != b]
        return len(diff) <= 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == keyword[diff[1]] and word[diff[1]] == keyword[diff[0]]
        )
    short, long_ = sorted((word, keyword), key=len)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def default_lexicon_dir() -> Path:
    """The `lexicons` folder of `kg.paths.default_data_dir()`."""
    return default_data_dir() / "lexicons"


class SectionSplitter:
    """Splits report text at known section titles; build once (`from_lexicons`) and reuse."""

    def __init__(self, titles: Iterable[str]) -> None:
        """`titles` as written, with or without the final ":"; each maps through `canonical_name`."""
        names: dict[str, str] = {}
        for title in titles:
            title = title.strip().rstrip(":").strip()
            if title and title != HEADER:
                names[" ".join(title.split())] = canonical_name(title)
        if not names:
            raise ValueError("no section titles given")
        self.names = names  # normalized title -> canonical name
        def alternatives(titles: Iterable[str]) -> str:
            return "|".join(r"[ \t]+".join(map(re.escape, t.split())) for t in sorted(titles, key=lambda t: (-len(t), t)))

        inline = alternatives(t for t, name in names.items() if t.isupper() and name != "OTHER")
        self._pattern = re.compile(
            rf"^[ \t]*(?:(?P<title>{alternatives(names)})[ \t]*:|(?P<header>{re.escape(HEADER)})[ \t]*:?)[ \t]*"
            rf"|(?<=[.!?])[ \t]+(?P<inline>{inline})[ \t]*:[ \t]*",
            re.MULTILINE,
        )

    @classmethod
    def from_lexicons(cls, lexicon_dir: Path | None = None) -> SectionSplitter:
        """Titles of NegBio and medspaCy under `lexicon_dir` (default: `default_lexicon_dir()`)."""
        lexicon_dir = default_lexicon_dir() if lexicon_dir is None else Path(lexicon_dir)
        negbio, medspacy = lexicon_dir / NEGBIO_TITLES, lexicon_dir / MEDSPACY_SECTIONS
        for path in (negbio, medspacy):
            if not path.is_file():
                raise MissingInputError(f"section title lexicon is missing: {path} (set MEDKG_DATA_DIR or pass lexicon_dir)")
        titles = negbio.read_text(encoding="utf-8-sig").splitlines()
        rules = json.loads(medspacy.read_text(encoding="utf-8-sig")).get("section_rules", [])
        titles += [literal for rule in rules if (literal := rule.get("literal", "")).strip().endswith(":")]
        return cls(titles)

    def split(self, text: str) -> list[Section]:
        """Sections of `text` in order; see the module docstring for the offsets."""
        sections: list[Section] = []
        name, body = "OTHER", 0
        for m in self._pattern.finditer(text):
            self._add(sections, text, name, body, m.start())
            title = m.group("title") or m.group("inline")
            name = self.names[" ".join(title.split())] if title else EXACT[HEADER]
            body = m.end()
        self._add(sections, text, name, body, len(text))
        return sections

    __call__ = split

    @staticmethod
    def _add(sections: list[Section], text: str, name: str, start: int, end: int) -> None:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            sections.append(Section(name, start, end))


@lru_cache(maxsize=1)
def default_splitter() -> SectionSplitter:
    """The splitter of `default_lexicon_dir()`, built on first use and kept."""
    return SectionSplitter.from_lexicons()


def split_sections(text: str, splitter: SectionSplitter | None = None) -> list[Section]:
    """Sections of `text`, with `splitter` or one built once from `default_lexicon_dir()`."""
    return (splitter or default_splitter()).split(text)
