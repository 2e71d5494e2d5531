"""Records of entity extraction: reports in, mentions out.

Offsets (`start`, `end`) always index `Report.text`, the one text a report has; for inputs
that come split into sections (IU X-ray XML) that text is the sections joined under
their titles ("FINDINGS: ...").
"""

from __future__ import annotations

from dataclasses import dataclass, field

ASSERTIONS = ("present", "absent", "uncertain")
# Sections whose mentions are kept but are not findings of this study.
NOT_FINDINGS = frozenset({"INDICATION", "HISTORY"})


@dataclass(frozen=True, slots=True)
class Section:
    name: str  # canonical upper-case title: FINDINGS, IMPRESSION, INDICATION, COMPARISON, HISTORY, TECHNIQUE, OTHER
    start: int
    end: int


@dataclass(slots=True)
class Report:
    id: str
    text: str
    source: str  # "iu-xray", "csv", "txt"
    sections: list[Section] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AssertionResult:
    assertion: str  # one of ASSERTIONS
    trigger: str | None  # the cue that decided it, as written in the text; None for present by default


@dataclass(slots=True)
class Mention:
    id: str  # concept id
    name: str  # concept preferred name
    text: str  # the report text that matched
    start: int
    end: int
    section: str
    assertion: str
    trigger: str | None
    similarity: float
    semantic_types: list[str]

    @property
    def is_finding(self) -> bool:
        return self.section not in NOT_FINDINGS
