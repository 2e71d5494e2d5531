"""UMLS semantic types (TUI) and the 15 semantic groups of McCray et al. (SemGroups.txt)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, MissingInputError
from .paths import default_data_dir

# Where the open data keeps the semantic groups (the same relative path `kg.open_graph` reads).
SEMGROUPS_FILE = "vocab/umls/SemGroups.txt"


@dataclass(frozen=True, slots=True)
class SemanticType:
    tui: str
    name: str
    group: str  # abbreviation: ANAT, DISO, PROC, ...
    group_name: str


def semgroups_path(data_dir: Path | None = None) -> Path:
    """SemGroups.txt in `data_dir` (default: `kg.paths.default_data_dir()`); FileNotFoundError when it is missing."""
    path = Path(data_dir or default_data_dir()) / SEMGROUPS_FILE
    if not path.exists():
        raise MissingInputError(f"semantic groups file is missing: {path} (set --data-dir or MEDKG_DATA_DIR)")
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
