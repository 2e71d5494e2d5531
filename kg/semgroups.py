"""UMLS semantic types (TUI) and the 15 semantic groups of McCray et al. (SemGroups.txt).

The package ships NLM's public SemGroups.txt (kg/data: the open data's copy, unchanged), so loading
a self-contained RRF directory needs no data directory; the file of a `data_dir` given still wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, MissingInputError

# Where the open data keeps the semantic groups (the same relative path `kg.open_graph` reads).
SEMGROUPS_FILE = "vocab/umls/SemGroups.txt"


@dataclass(frozen=True, slots=True)
class SemanticType:
    tui: str
    name: str
    group: str  # abbreviation: ANAT, DISO, PROC, ...
    group_name: str


PACKAGED = Path(__file__).with_name("data") / "SemGroups.txt"


def semgroups_path(data_dir: Path | None = None) -> Path:
    """SemGroups.txt in `data_dir` (MissingInputError when it lacks one), else the packaged copy."""
    if data_dir is None:
        return PACKAGED
    path = Path(data_dir) / SEMGROUPS_FILE
    if not path.exists():
        raise MissingInputError(f"semantic groups file is missing: {path}")
    return path


def read_semgroups(path: Path) -> dict[str, SemanticType]:
    """TUI -> SemanticType from lines `GROUP|Group name|TUI|Type name`."""
    types: dict[str, SemanticType] = {}
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("|")
            if len(parts) != 4:
                raise ValueError(f"{path}:{number}: expected GROUP|Group name|TUI|Type name, got {line.strip()!r}")
            group, group_name, tui, name = parts
            types[tui] = SemanticType(tui, name, group, group_name)
    return types


def resolve_groups(types: dict[str, SemanticType], groups: Iterable[str]) -> set[str]:
    """TUIs of the named groups (abbreviation or full name, any case)."""
    groups = list(groups)
    wanted = {g.lower() for g in groups}
    known = {t.group.lower() for t in types.values()} | {t.group_name.lower() for t in types.values()}
    unknown = [g for g in groups if g.lower() not in known]
    if unknown:
        choices = ", ".join(sorted({t.group for t in types.values()}))
        raise InputError(f"unknown semantic group(s) {', '.join(sorted(unknown))}; choose from {choices}")
    return {t.tui for t in types.values() if t.group.lower() in wanted or t.group_name.lower() in wanted}
