"""Bad input is reported with its file and line and counted, so a long build can go on.

One log is shared by every reader of a build; `strict` turns the first problem into an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_open
from .errors import MedkgError

log = logging.getLogger(__name__)


class MalformedInputError(MedkgError, ValueError):
    """Raised in strict mode, or when nothing usable is left of an input."""


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    kind: str  # short category for the summary: "column count", "encoding", "dangling relation"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class ProblemLog:
    strict: bool = False
    max_logged: int = 20  # the rest are counted, not printed
    problems: list[Problem] = field(default_factory=list)

    def report(self, file: str | Path, line: int | None, kind: str, message: str) -> None:
        problem = Problem(str(file), line, kind, message)
        if self.strict:
            raise MalformedInputError(str(problem))
        if len(self.problems) < self.max_logged:
            log.warning("%s", problem)
        self.problems.append(problem)

    def __len__(self) -> int:
        return len(self.problems)

    def counts(self) -> Counter[str]:
        return Counter(p.kind for p in self.problems)

    def write(self, path: Path) -> None:
        """Every problem, one a line, written whole or not at all."""
        with atomic_open(path, "w", encoding="utf-8") as handle:
            handle.writelines(f"{problem}\n" for problem in self.problems)

    def summary(self) -> str:
        if not self.problems:
            return "no problems"
        parts = ", ".join(f"{n} {kind}" for kind, n in self.counts().most_common())
        return f"{len(self.problems)} problems: {parts}"
