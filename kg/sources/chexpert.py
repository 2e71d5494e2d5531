"""CheXpert labeler reader: one concept per observation, its mention phrases as synonyms.

`path` is the labeler's `phrases` directory; the mention lists in `phrases/mention/*.txt`
are read (one phrase a line), the unmention lists are exclusions for the labeler, not names.
The observation name is the file stem title-cased, exactly as the labeler derives it
(`pleural_effusion.txt` -> "Pleural Effusion").
"""

from __future__ import annotations

from pathlib import Path

from kg.model import SourceConcept, SourceRelation
from kg.problems import ProblemLog

SOURCE = "CHEXPERT"
SEMANTIC_TYPE = "T033"  # Finding
SEMANTIC_TYPE_BY_CODE = {"support_devices": "T074"}  # Medical Device
# "No Finding" is assigned when nothing else is found; its list names findings that rule it
# out (emphysema, density, ...), so those phrases are not synonyms of it.
NOT_SYNONYMS = {"no_finding"}


def read(path: Path, problems: ProblemLog) -> tuple[list[SourceConcept], list[SourceRelation]]:
    """Read `phrases/mention/*.txt`; an unreadable file is reported and skipped."""
    mention_dir = path / "mention"
    files = sorted(mention_dir.glob("*.txt"))
    if not files:
        problems.report(mention_dir, None, "missing input", "no mention phrase files")
    concepts: list[SourceConcept] = []
    for file in files:
        try:
            lines = file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            problems.report(file, None, "unreadable", str(e))
            continue
        code = file.stem
        concept = SourceConcept(
            SOURCE,
            code,
            code.replace("_", " ").title(),
            semantic_types=[SEMANTIC_TYPE_BY_CODE.get(code, SEMANTIC_TYPE)],
        )
        if code not in NOT_SYNONYMS:
            concept.synonyms = _phrases(lines)
        concepts.append(concept)
    return concepts, []


def _phrases(lines: list[str]) -> list[str]:
    """Distinct phrases in file order; `_` marks a word boundary for the labeler's regex, a space here."""
    phrases: list[str] = []
    for line in lines:
        phrase = " ".join(line.replace("_", " ").split())
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases
