"""Streaming reader and atomic writer for UMLS Rich Release Format (RRF) tables.

RRF rows are `|`-separated with a trailing `|`. Files run to tens of GB in a full UMLS
release, so rows are yielded one at a time and a bad line costs one report, not the build.

Relationship direction follows the UMLS Reference Manual: REL and RELA state what CUI2 is
to CUI1 (`CUI1|..|CHD|CUI2|..|isa` reads "CUI2 isa CUI1").
"""

from __future__ import annotations

import codecs
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .atomic import replace_directory, sibling_directory
from .errors import ExistingOutputError, MissingInputError
from .problems import ProblemLog


class MRCONSO(NamedTuple):
    CUI: str
    LAT: str
    TS: str
    LUI: str
    STT: str
    SUI: str
    ISPREF: str
    AUI: str
    SAUI: str
    SCUI: str
    SDUI: str
    SAB: str
    TTY: str
    CODE: str
    STR: str
    SRL: str
    SUPPRESS: str
    CVF: str


class MRSTY(NamedTuple):
    CUI: str
    TUI: str
    STN: str
    STY: str
    ATUI: str
    CVF: str


class MRREL(NamedTuple):
    CUI1: str
    AUI1: str
    STYPE1: str
    REL: str
    CUI2: str
    AUI2: str
    STYPE2: str
    RELA: str
    RUI: str
    SRUI: str
    SAB: str
    SL: str
    RG: str
    DIR: str
    SUPPRESS: str
    CVF: str


class MRDEF(NamedTuple):
    CUI: str
    AUI: str
    ATUI: str
    SATUI: str
    SAB: str
    DEF: str
    SUPPRESS: str
    CVF: str


class MRSAT(NamedTuple):
    """Attributes; medkg keeps relationship support counts here (STYPE=RUI, ATN=SUPPORT)."""

    CUI: str
    LUI: str
    SUI: str
    METAUI: str
    STYPE: str
    CODE: str
    ATUI: str
    SATUI: str
    ATN: str
    SAB: str
    ATV: str
    SUPPRESS: str
    CVF: str


TABLES: dict[str, type[NamedTuple]] = {
    "MRCONSO": MRCONSO,
    "MRSTY": MRSTY,
    "MRREL": MRREL,
    "MRDEF": MRDEF,
    "MRSAT": MRSAT,
}
REQUIRED = ("MRCONSO", "MRSTY", "MRREL", "MRDEF")
MANIFEST = "medkg.json"  # written beside the tables of every medkg build
SUPPORT_ATTRIBUTE = "SUPPORT"


# SUPPRESS values that withdraw a row (O obsolete, E editor, Y suppressible); N is current.
SUPPRESSED = frozenset({"O", "E", "Y"})
# A concept's preferred atom, the one that names it: preferred term (TS), its preferred string (STT),
# preferred in its source (ISPREF). Every other atom is a synonym, written with SYNONYM_ATOM.
PREFERRED_ATOM = {"TS": "P", "STT": "PF", "ISPREF": "Y"}
SYNONYM_ATOM = {"TS": "S", "STT": "VO", "ISPREF": "N"}


def is_preferred(row: MRCONSO) -> bool:
    """Whether an MRCONSO row is its concept's preferred atom (`PREFERRED_ATOM`)."""
    return all(getattr(row, field) == value for field, value in PREFERRED_ATOM.items())


def atom(cui: str, string: str, preferred: bool, sab: str, tty: str, code: str, aui: str = "") -> MRCONSO:
    """An English MRCONSO row as medkg writes it: the preferred atom or a synonym."""
    flags = PREFERRED_ATOM if preferred else SYNONYM_ATOM
    return MRCONSO(cui, "ENG", flags["TS"], "", flags["STT"], "", flags["ISPREF"], aui, "", "", "", sab, tty, code, string, "0", "N", "")


def table_path(directory: Path, table: str) -> Path:
    return Path(directory) / f"{table}.RRF"


def require_tables(directory: Path, tables: tuple[str, ...] = REQUIRED, what: str = "an RRF directory") -> None:
    """Fail before any work when a table is missing, naming every missing file."""
    missing = [str(table_path(directory, t)) for t in tables if not table_path(directory, t).exists()]
    if missing:
        raise MissingInputError(f"not {what}, missing: {', '.join(missing)}")


def read_table(
    path: Path, row_type: type[NamedTuple], problems: ProblemLog, prefilter: bytes | None = None
) -> Iterator[tuple[int, NamedTuple]]:
    """Yield `(line number, row)` of one RRF file; lines with a wrong column count or bad UTF-8 are reported,
    and a UTF-8 byte-order mark at the start of the file is dropped.

    `prefilter` skips lines that do not contain those bytes before decoding them, which makes
    a pass over a 10 GB MRSAT for a rare attribute cheap.
    """
    width = len(row_type._fields)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # else it would be part of the first CUI
            if prefilter is not None and prefilter not in raw:
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                problems.report(path, number, "encoding", f"not UTF-8 ({error.reason} at byte {error.start})")
                continue
            fields = line.rstrip("\r\n").split("|")
            if fields and fields[-1] == "":
                fields.pop()  # the trailing separator
            if len(fields) != width:
                problems.report(path, number, "column count", f"{len(fields)} columns, {row_type.__name__} has {width}")
                continue
            yield number, row_type(*fields)


def clean_field(value: str) -> str:
    """RRF has no escaping: a `|` or line break inside a value would shift every column."""
    return value.replace("|", "/").replace("\r", " ").replace("\n", " ")


class RRFWriter:
    """Writes a set of RRF tables into a directory that appears whole or not at all.

    Rows go to a temporary directory beside the target; `commit` swaps it in, so a failed
    build never leaves half-written files where a previous good build was.
    """

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        if self.out_dir.is_file() or (self.out_dir.is_dir() and any(self.out_dir.iterdir()) and not (self.out_dir / MANIFEST).exists()):
            raise ExistingOutputError(f"{self.out_dir} exists and is not a medkg build (no {MANIFEST}); "
                                  "write to a new or empty directory, a build replaces its output whole")
        self._tmp = sibling_directory(self.out_dir)
        self._handles = {name: open(table_path(self._tmp, name), "w", encoding="utf-8", newline="\n") for name in TABLES}
        self.counts = dict.fromkeys(TABLES, 0)

    def write(self, row: NamedTuple) -> None:
        table = type(row).__name__
        self._handles[table].write("|".join(clean_field(v) for v in row) + "|\n")
        self.counts[table] += 1

    def write_relation(self, cui1: str, rel: str, cui2: str, rela: str, rui: str, source: str, support: int,
                       aui1: str = "", aui2: str = "") -> None:
        """One MRREL row and, for a relation with report support, its SUPPORT attribute in MRSAT (the UMLS
        way to annotate a relationship, keeping the core files standard)."""
        self.write(MRREL(cui1, aui1, "CUI", rel, cui2, aui2, "CUI", rela, rui, "", source, source, "", "", "N", ""))
        if support:
            self.write(MRSAT(cui1, "", "", rui, "RUI", "", "", "", SUPPORT_ATTRIBUTE, source, str(support), "N", ""))

    def commit(self, manifest: dict | None = None) -> Path:
        """Swap the finished tables in; `manifest` (with the row counts added) records what was built."""
        (self._tmp / MANIFEST).write_text(json.dumps({**(manifest or {}), "rows": dict(self.counts)}, indent=2), encoding="utf-8")
        self._close()
        if self.counts["MRSAT"] == 0:
            table_path(self._tmp, "MRSAT").unlink()
        replace_directory(self._tmp, self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        self._close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _close(self) -> None:
        for handle in self._handles.values():
            handle.close()

    def __enter__(self) -> RRFWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
