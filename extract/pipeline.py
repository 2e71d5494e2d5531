"""Reports -> mentions, streamed, in parallel over reports.

Each worker process loads the cached index and the lexicons once. Sentences repeat across
reports ("No pneumothorax." thousands of times), so a sentence's mentions are computed once
per process and reused.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tqdm import tqdm

from kg.problems import ProblemLog
from kg.semgroups import SemanticType, read_semgroups, semgroups_path

from .assertion import AssertionEngine
from .index import ConceptIndex, ensure_index, load_index
from .matcher import ConceptMatcher
from .model import Mention, Report
from .reports import iter_reports
from .sections import SectionSplitter, default_lexicon_dir
from .sentences import split_sentences

BATCH_PER_WORKER = 64  # reports in flight per worker: bounds memory on any input size


@dataclass(frozen=True)
class ExtractionConfig:
    index_dir: Path
    lexicon_dir: Path | None = None  # default: default_lexicon_dir()
    fuzzy: bool = True


def prepare_extraction(
    kg_dir: Path, home: Path, types: dict[str, SemanticType] | None = None, lexicon_dir: Path | None = None,
    rebuild: bool = False, progress: bool = True,
) -> tuple[ConceptIndex, ExtractionConfig]:
    """The concept index of RRF directory `kg_dir` (cached under `home`, built when missing or stale) and the
    extraction config that reads it with the lexicons of `lexicon_dir` (default: `default_lexicon_dir()`).
    `types` are the semantic groups (default: SemGroups.txt of the default data folder)."""
    types = types if types is not None else read_semgroups(semgroups_path())
    concept_index, _ = ensure_index(kg_dir, home, types, rebuild, progress)
    return concept_index, ExtractionConfig(concept_index.directory, lexicon_dir or default_lexicon_dir())


class Extractor:
    def __init__(self, config: ExtractionConfig, index: ConceptIndex | None = None):
        self.index = index or load_index(config.index_dir)
        self.matcher = ConceptMatcher(self.index, fuzzy=config.fuzzy)
        lexicon_dir = config.lexicon_dir or default_lexicon_dir()
        self.engine = AssertionEngine.from_lexicons(lexicon_dir)
        self.splitter = SectionSplitter.from_lexicons(lexicon_dir)
        self._sentence = lru_cache(maxsize=1 << 16)(self._sentence_mentions)

    def _sentence_mentions(self, sentence: str) -> tuple[tuple, ...]:
        """Mentions of one sentence with offsets relative to it: (id, start, end, similarity, assertion, trigger)."""
        matches = self.matcher.match(sentence)
        if not matches:
            return ()
        scanned = self.engine.sentence(sentence)
        found = []
        for m in matches:
            if m.assertion is not None:
                assertion, trigger = m.assertion, m.trigger
            else:
                result = scanned.assertion(m.start, m.end)
                assertion, trigger = result.assertion, result.trigger
            found.append((m.concept_id, m.start, m.end, m.similarity, assertion, trigger))
        return tuple(found)

    def mentions(self, report: Report) -> list[Mention]:
        if not report.sections and report.text:
            report.sections = self.splitter.split(report.text)
        concepts = self.index.concepts
        found: list[Mention] = []
        for section in report.sections:
            for start, end in split_sentences(report.text, section.start, section.end):
                for cid, s, e, similarity, assertion, trigger in self._sentence(report.text[start:end]):
                    info = concepts[cid]
                    found.append(Mention(cid, info.name, report.text[start + s : start + e], start + s, start + e,
                                         section.name, assertion, trigger, similarity, list(info.semantic_types)))
        return found


_worker: Extractor | None = None


def _set_worker(extractor: Extractor | ExtractionConfig) -> None:
    """Forked workers inherit the parent's extractor; spawned ones build their own from the config."""
    global _worker
    _worker = extractor if isinstance(extractor, Extractor) else Extractor(extractor)


def _start_worker(config: ExtractionConfig | None) -> None:
    """Ctrl-C reaches every process of the terminal's group: a worker leaves it to the parent, which
    stops the pool (else each worker prints a traceback of its own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config is not None:
        _set_worker(config)


def _extract(report: Report) -> tuple[Report, list[Mention]]:
    assert _worker is not None
    return report, _worker.mentions(report)


def extract_reports(
    path: Path, config: ExtractionConfig, problems: ProblemLog, workers: int = 1, progress: bool = True
) -> Iterator[tuple[Report, list[Mention]]]:
    """(report, mentions) in input order; unreadable reports go to `problems` and are skipped."""
    # Built here, before any worker exists: a bad lexicon or index fails once, with its message,
    # instead of failing in every worker start (which a process pool retries forever). Its section
    # splitter (from the config's lexicons) also splits CSV and txt reports as they are read.
    extractor = Extractor(config)
    reports = iter_reports(path, problems, extractor.splitter)
    bar = tqdm(desc="extracting", unit=" reports", disable=not progress, mininterval=0.5)
    try:
        if workers <= 1:
            for report in reports:
                yield report, extractor.mentions(report)
                bar.update()
            return
        fork = "fork" in mp.get_all_start_methods()
        if fork:
            _set_worker(extractor)
        context = mp.get_context("fork" if fork else "spawn")
        with context.Pool(workers, initializer=_start_worker, initargs=(None if fork else config,)) as pool:
            # The next batch is read and submitted before this one is yielded, so workers never
            # wait for the main process; at most two batches are in memory.
            pending = None
            while True:
                batch = list(itertools.islice(reports, workers * BATCH_PER_WORKER))
                submitted = pool.map_async(_extract, batch, chunksize=16) if batch else None
                if pending is not None:
                    for result in pending.get():
                        yield result
                        bar.update()
                if submitted is None:
                    break
                pending = submitted
    finally:
        bar.close()

