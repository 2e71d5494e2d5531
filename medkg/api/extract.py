"""`medkg extract ...` as Python: index an RRF directory, extract mentions, labels and assertions."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from extract.assertion import AssertionEngine, write_assertions_tsv
from extract.index import ConceptIndex, ensure_index
from extract.io import MentionWriter, mention_record
from extract.labels import label_report, load_label_set
from extract.model import Mention, Report
from extract.pipeline import ExtractionConfig, Extractor, extract_reports, prepare_extraction
from extract.sections import default_lexicon_dir
from graphdb.uri import medkg_home, open_store
from kg.atomic import atomic_open
from kg.problems import MalformedInputError, ProblemLog
from kg.semgroups import read_semgroups, semgroups_path

__all__ = ["RunSummary", "assertions", "index", "labels", "mention_record", "mentions", "run"]


@dataclass
class RunSummary:
    out: Path
    reports: int = 0
    mentions: int = 0
    assertions: Counter[str] = field(default_factory=Counter)
    linked: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # mentions --link could not store

    def __str__(self) -> str:
        counts = ", ".join(f"{n:,} {a}" for a, n in sorted(self.assertions.items()))
        text = f"wrote {self.out}: {self.reports:,} reports, {self.mentions:,} mentions ({counts})"
        if self.linked or self.rejected:
            text += f"; linked {self.linked:,} report-concept mentions into the graph"
        if self.rejected:
            text += f"; left out {len(self.rejected):,} mentions of concepts the graph does not hold, e.g. {self.rejected[0][0]}"
        return text


def index(rrf_dir: Path, rebuild: bool = False, data_dir: Path | None = None, progress: bool = True) -> tuple[ConceptIndex, bool]:
    """The concept index for an RRF directory, from the cache unless the RRF files changed."""
    return ensure_index(rrf_dir, medkg_home(), read_semgroups(semgroups_path(data_dir)), rebuild, progress)


def _prepare(kg_dir: Path, progress: bool) -> tuple[ConceptIndex, ExtractionConfig]:
    return prepare_extraction(kg_dir, medkg_home(), read_semgroups(semgroups_path()), progress=progress)


def mentions(texts: list[str], kg_dir: Path, progress: bool = False) -> list[list[Mention]]:
    """The mentions of each free text (a report, a sentence), in this process: for notebooks and
    short lists; `run` is the command for corpora."""
    concept_index, config = _prepare(kg_dir, progress)
    extractor = Extractor(config, concept_index)
    return [extractor.mentions(Report(str(i), text, "text")) for i, text in enumerate(texts)]


def run(
    input_path: Path, kg_dir: Path, out: Path, workers: int = 1, link: bool = False, graph: str | None = None,
    problems: ProblemLog | None = None, progress: bool = True,
) -> RunSummary:
    """Write one JSON object per report to `out` (JSON Lines); with `link`, merge the mentions into the graph."""
    if link:  # before any work: a graph that is not there (a typo in its URI) is refused, not created empty
        open_store(graph).close()
    problems = problems if problems is not None else ProblemLog()
    summary = RunSummary(Path(out))
    links: list[dict] = []
    with MentionWriter(out) as writer:
        _, config = _prepare(kg_dir, progress)
        for report, mentions in extract_reports(input_path, config, problems, workers, progress):
            writer.write(report, mentions)
            summary.reports += 1
            summary.mentions += len(mentions)
            summary.assertions.update(m.assertion for m in mentions)
            if link:
                counts = Counter((m.id, m.assertion, m.section) for m in mentions)
                links += [{"report": report.id, "source": report.source, "concept": cid, "assertion": a, "section": s, "count": n}
                          for (cid, a, s), n in counts.items()]
        _require_reports(summary.reports, input_path, out, problems)
    if link:
        with open_store(graph, read_only=False) as store:
            summary.linked = store.link_mentions(links, summary.rejected)["MENTIONS"].rows
    return summary


def labels(
    input_path: Path, kg_dir: Path, label_set: str, out: Path, workers: int = 1,
    problems: ProblemLog | None = None, progress: bool = True,
) -> int:
    """One CSV row per report: `id`, then 1 present, 0 absent, -1 uncertain, empty when not mentioned."""
    problems = problems if problems is not None else ProblemLog()
    concept_index, config = _prepare(kg_dir, progress)
    rules = load_label_set(label_set, concept_index, kg_dir)
    count = 0
    with atomic_open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *rules.columns])
        for report, mentions in extract_reports(input_path, config, problems, workers, progress):
            values = label_report(report, mentions, rules)
            writer.writerow([report.id, *(values[c] for c in rules.columns)])
            count += 1
        _require_reports(count, input_path, out, problems)
    return count


def _require_reports(count: int, input_path: Path, out: Path, problems: ProblemLog) -> None:
    """Raised inside the output's atomic write, so a run that read nothing never replaces a previous output."""
    if not count:
        raise MalformedInputError(f"{input_path}: no report could be read ({problems.summary()}); {out} was not written")


def assertions(input_tsv: Path, out: Path, problems: ProblemLog | None = None, lexicon_dir: Path | None = None) -> int:
    engine = AssertionEngine.from_lexicons(lexicon_dir or default_lexicon_dir())
    return write_assertions_tsv(input_tsv, out, engine, problems if problems is not None else ProblemLog())
