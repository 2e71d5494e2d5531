"""Select a subset of a licensed UMLS Metathesaurus release and write it as RRF.

A release's MRCONSO alone is ~2 GB, so every table is streamed; only sets of CUIs (every CUI
of the release, to tell dangling relations from filtered ones, and the selected ones) are held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .problems import MalformedInputError, ProblemLog
from .rrf import (
    MRCONSO,
    MRDEF,
    MRREL,
    MRSAT,
    MRSTY,
    SUPPORT_ATTRIBUTE,
    SUPPRESSED,
    RRFWriter,
    read_table,
    require_tables,
    table_path,
)
from .semgroups import SemanticType, resolve_groups


@dataclass
class UMLSFilter:
    languages: set[str] = field(default_factory=lambda: {"ENG"})
    sabs: set[str] | None = None  # source vocabularies; None keeps all
    semantic_types: set[str] | None = None  # TUIs; None keeps all
    semantic_groups: set[str] | None = None  # group abbreviations or names
    keep_suppressed: bool = False
    skip_rels: set[str] = field(default_factory=lambda: {"SIB", "SY"})  # siblings and synonymy add no structure

    def allowed_tuis(self, types: dict[str, SemanticType]) -> set[str] | None:
        if self.semantic_types is None and self.semantic_groups is None:
            return None
        allowed = set(self.semantic_types or ())
        if self.semantic_groups:
            allowed |= resolve_groups(types, self.semantic_groups)
        return allowed

    def keeps(self, sab: str, suppress: str) -> bool:
        return (self.sabs is None or sab in self.sabs) and (self.keep_suppressed or suppress not in SUPPRESSED)


@dataclass
class SubsetSummary:
    out_dir: Path
    concepts: int
    rows: dict[str, int]
    outside_selection: int  # relations to concepts the filter left out
    problems: int

    def __str__(self) -> str:
        rows = ", ".join(f"{t} {n:,}" for t, n in self.rows.items())
        return (f"wrote {self.out_dir}: {self.concepts:,} concepts ({rows}); "
                f"{self.outside_selection:,} relations left out with their concepts; {self.problems:,} problems")


def _rows(path: Path, row_type, problems: ProblemLog, desc: str, progress: bool, prefilter: bytes | None = None) -> Iterable:
    return tqdm(read_table(path, row_type, problems, prefilter), desc=desc, unit=" rows", mininterval=0.5, disable=not progress)


def subset_umls(
    meta_dir: Path, out_dir: Path, flt: UMLSFilter, types: dict[str, SemanticType], problems: ProblemLog, progress: bool = True
) -> SubsetSummary:
    meta_dir = Path(meta_dir)
    require_tables(meta_dir, what="a UMLS META directory")
    allowed = flt.allowed_tuis(types)
    typed: set[str] | None = None
    if allowed is not None:
        typed = {row.CUI for _, row in _rows(table_path(meta_dir, "MRSTY"), MRSTY, problems, "MRSTY", progress) if row.TUI in allowed}

    all_cuis: set[str] = set()
    kept: set[str] = set()
    with RRFWriter(out_dir) as writer:
        for _, row in _rows(table_path(meta_dir, "MRCONSO"), MRCONSO, problems, "MRCONSO", progress):
            all_cuis.add(row.CUI)
            if row.LAT in flt.languages and flt.keeps(row.SAB, row.SUPPRESS) and (typed is None or row.CUI in typed):
                kept.add(row.CUI)
                writer.write(row)
        if not kept:
            raise MalformedInputError(f"{meta_dir}: the filter selects no concepts")
        for _, row in _rows(table_path(meta_dir, "MRSTY"), MRSTY, problems, "MRSTY", progress):
            if row.CUI in kept:
                writer.write(row)
        for _, row in _rows(table_path(meta_dir, "MRDEF"), MRDEF, problems, "MRDEF", progress):
            if row.CUI in kept and flt.keeps(row.SAB, row.SUPPRESS):
                writer.write(row)
        outside = 0
        kept_ruis: set[str] = set()
        mrrel = table_path(meta_dir, "MRREL")
        for number, row in _rows(mrrel, MRREL, problems, "MRREL", progress):
            if row.REL in flt.skip_rels or not flt.keeps(row.SAB, row.SUPPRESS):
                continue
            unknown = [c for c in (row.CUI1, row.CUI2) if c not in all_cuis]
            if unknown:
                problems.report(mrrel, number, "dangling relation", f"{row.REL}/{row.RELA or '-'} names {', '.join(unknown)}, which MRCONSO does not have")
            elif row.CUI1 in kept and row.CUI2 in kept:
                writer.write(row)
                kept_ruis.add(row.RUI)
            else:
                outside += 1
        mrsat = table_path(meta_dir, "MRSAT")
        if mrsat.exists():  # carries medkg's relation support when META is itself a medkg build
            prefilter = f"|{SUPPORT_ATTRIBUTE}|".encode()
            for _, row in _rows(mrsat, MRSAT, problems, "MRSAT", progress, prefilter):
                if row.STYPE == "RUI" and row.ATN == SUPPORT_ATTRIBUTE and row.METAUI in kept_ruis:
                    writer.write(row)
        rows = dict(writer.counts)
        writer.commit({"source": "umls", "umls_dir": str(meta_dir.resolve()), "concepts": len(kept), "problems": dict(problems.counts())})
    return SubsetSummary(Path(out_dir), len(kept), rows, outside, len(problems))
