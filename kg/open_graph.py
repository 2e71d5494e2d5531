"""Build the open radiology knowledge graph and write it as RRF.

Writing RRF (rather than a private format) lets one reader, one database loader and one
concept index serve both this graph and a licensed UMLS release.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .derived import located_at_from_names
from .errors import MissingInputError
from .merge import MergeResult, merge
from .model import SourceConcept, SourceRelation
from .problems import ProblemLog
from .relations import rrf_from_edge
from .rrf import MRDEF, MRSTY, RRFWriter, atom
from .semgroups import SemanticType, read_semgroups
from .sources import chexpert, doid, iu_xray, mesh, radlex

# Priority when sources disagree: the first source of a merged concept names it.
SOURCE_ORDER = ("RADLEX", "MESH", "DOID", "CHEXPERT", "IUXRAY")
SOURCE_FILES = {
    "RADLEX": (radlex, "vocab/radlex/Radlex.csv"),
    "MESH": (mesh, "vocab/mesh/2017MeshTree.txt"),
    "DOID": (doid, "vocab/doid/doid-2016-09-01.obo"),
    "CHEXPERT": (chexpert, "lexicons/chexpert-labeler/phrases"),
    "IUXRAY": (iu_xray, "iu-xray/NLMCXR_reports.tgz"),
}
SEMGROUPS_FILE = "vocab/umls/SemGroups.txt"


@dataclass
class BuildSummary:
    out_dir: Path
    source_counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # source -> (concepts, relations)
    concepts: int = 0
    relations: int = 0
    dropped_self_loops: int = 0
    dropped_dangling: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"wrote {self.out_dir}: {self.concepts:,} concepts, {self.relations:,} relations"]
        lines += [f"  {s:<9} {c:>7,} terms  {r:>7,} relations" for s, (c, r) in self.source_counts.items()]
        lines.append(f"  dropped: {self.dropped_self_loops:,} self-loops after merging, {self.dropped_dangling:,} relations to unknown terms")
        return "\n".join(lines)


def _require(path: Path) -> Path:
    if not path.exists():
        raise MissingInputError(f"open graph input is missing: {path}")
    return path


def read_sources(data_dir: Path, problems: ProblemLog, progress: bool = True) -> tuple[list[SourceConcept], list[SourceRelation], dict[str, tuple[int, int]]]:
    concepts: list[SourceConcept] = []
    relations: list[SourceRelation] = []
    counts: dict[str, tuple[int, int]] = {}
    bar = tqdm(SOURCE_ORDER, desc="reading sources", unit="source", disable=not progress)
    for source in bar:
        bar.set_postfix_str(source)
        module, relative = SOURCE_FILES[source]
        found, linked = module.read(_require(Path(data_dir) / relative), problems)
        counts[source] = (len(found), len(linked))
        concepts += found
        relations += linked
    return concepts, relations, counts


def build_open_graph(data_dir: Path, out_dir: Path, problems: ProblemLog, progress: bool = True) -> BuildSummary:
    data_dir = Path(data_dir)
    semantic_types = read_semgroups(_require(data_dir / SEMGROUPS_FILE))
    concepts, relations, counts = read_sources(data_dir, problems, progress)
    result = merge(concepts, relations, SOURCE_ORDER)
    group_of = {c.id: semantic_types[c.semantic_types[0]].group for c in result.concepts
                if c.semantic_types and c.semantic_types[0] in semantic_types}
    findings = {cid for cid, group in group_of.items() if group == "DISO"}
    anatomy = {cid for cid, group in group_of.items() if group == "ANAT"}
    result.relations += located_at_from_names(result.concepts, findings, anatomy)
    for r in result.dropped_dangling:
        problems.report(r.source, None, "dangling relation", f"{r.head} {r.relation} {r.tail}: a term is not in the source")
    with RRFWriter(out_dir) as writer:
        rows = write_rrf(result, semantic_types, writer)
        summary = BuildSummary(
            Path(out_dir), counts, len(result.concepts), len(result.relations),
            result.dropped_self_loops, len(result.dropped_dangling), rows,
        )
        writer.commit({
            "source": "open", "data_dir": str(data_dir.resolve()), "sources": list(SOURCE_ORDER),
            "concepts": summary.concepts, "relations": summary.relations, "problems": dict(problems.counts()),
        })
    return summary


def write_rrf(result: MergeResult, semantic_types: dict[str, SemanticType], writer: RRFWriter) -> dict[str, int]:
    first_aui: dict[str, str] = {}  # concept id -> AUI of its preferred atom, for relations
    aui_number = 0
    for concept in result.concepts:
        source_aui: dict[str, str] = {}
        seen: set[tuple[str, str, str]] = set()
        for member in concept.members:
            for tty, string in [("PT", member.name)] + [("SY", s) for s in member.synonyms]:
                if not string.strip() or (member.source, member.code, string) in seen:
                    continue
                seen.add((member.source, member.code, string))
                aui_number += 1
                aui = f"A{aui_number:08d}"
                preferred = concept.id not in first_aui
                first_aui.setdefault(concept.id, aui)
                source_aui.setdefault(member.key, aui)
                writer.write(atom(concept.id, string, preferred, member.source, tty, member.code, aui))
        for tui in concept.semantic_types:
            name = semantic_types[tui].name if tui in semantic_types else ""
            writer.write(MRSTY(concept.id, tui, "", name, "", ""))
        if concept.definition is not None:
            member, text = concept.definition
            writer.write(MRDEF(concept.id, source_aui.get(member.key, ""), "", "", member.source, text, "N", ""))
    for number, r in enumerate(result.relations, start=1):
        cui1, rel, cui2, rela = rrf_from_edge(r.head, r.relation.upper(), r.tail)
        rui = f"R{number:08d}"
        writer.write_relation(cui1, rel, cui2, rela, rui, r.source, r.support, first_aui[cui1], first_aui[cui2])
    return dict(writer.counts)
