"""Everything the aligner's knowledge is computed from, made on first use: the open radiology graph, its concept
index and the mentions of a report corpus, under one cache folder.

`ensure_assets(data_dir, cache_dir)` builds what is missing or stale and re-uses the rest, so a fresh machine
needs no command before training:
- the graph: `kg.open_graph.build_open_graph(data_dir)` into `cache_dir/open-kg`, current while the source files
  (size and modification time, recorded in `cache_dir/open-kg.inputs.json`) are unchanged;
- the concept index: `extract.index.ensure_index` under `cache_dir/extract-index/` (its own stamp: MRCONSO and MRSTY);
- the mentions: `extract.pipeline.extract_reports` over the corpus (default: the IU X-ray archive), written with
  each report's text and sections to `cache_dir/mentions/<name>-<path digest>-<key>.jsonl`, where the key digests
  the corpus contents, the index stamp, the lexicons and extraction rules; a changed input or graph gives a new
  key and a new extraction, and the superseded file of the same corpus path is removed.
Explicit inputs replace the first and last step: `kg_dir` (an existing RRF directory, e.g. a UMLS subset) and
`mentions` (an existing mentions file). Every write is atomic, and concurrent callers (one per training process)
take turns on a lock in `cache_dir`, so all but the first find everything current.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from extract.index import ConceptIndex, ensure_index
from extract.io import read_reports, write_mentions
from extract.model import Mention, Report
from extract.pipeline import ExtractionConfig, extract_reports
from kg.atomic import atomic_open
from kg.errors import MissingInputError
from kg.open_graph import SOURCE_FILES, build_open_graph
from kg.problems import ProblemLog
from kg.rrf import MANIFEST, require_tables
from kg.semgroups import SEMGROUPS_FILE, SemanticType, read_semgroups, semgroups_path

log = logging.getLogger(__name__)

GRAPH_DIR = "open-kg"
GRAPH_STAMP = "open-kg.inputs.json"
MENTIONS_DIR = "mentions"
IU_REPORTS = "iu-xray/NLMCXR_reports.tgz"
LEXICONS = "lexicons"
GRAPH_VERSION = 1  # raise when the open graph build changes what it writes
MENTIONS_VERSION = 1  # raise when extraction changes what it finds
STEPS = ("graph", "index", "mentions")

ReportMentions = Mapping[str, list[Mention]] | Iterable[tuple[Report | str, list[Mention]]]


@dataclass
class Assets:
    kg_dir: Path
    index: ConceptIndex
    config: ExtractionConfig
    mentions: Path
    types: dict[str, SemanticType]
    built: dict[str, bool] = field(default_factory=dict)  # step -> built (or rebuilt) by this call
    seconds: dict[str, float] = field(default_factory=dict)  # step -> seconds this call spent on it

    def reports(self, problems: ProblemLog | None = None) -> list[tuple[Report, list[Mention]]]:
        """The corpus's (report, mentions), with report text and sections when the mentions file kept them."""
        return load_reports(self.mentions, problems)

    def __str__(self) -> str:
        lines = [f"{step}: {'built' if self.built.get(step) else 'up to date'} in {self.seconds.get(step, 0.0):.1f} s"
                 for step in STEPS if step in self.seconds]
        return "\n".join([*lines, f"graph {self.kg_dir}", f"index {self.index.directory}", f"mentions {self.mentions}"])


def ensure_assets(
    data_dir: Path, cache_dir: Path, progress: bool = True, *, kg_dir: Path | None = None, mentions: Path | None = None,
    reports: Path | None = None, workers: int = 2, problems: ProblemLog | None = None,
) -> Assets:
    """The graph, index and mentions the aligner needs, each built when missing or stale (see the module docstring).

    `reports` is the corpus to extract (default: the IU X-ray archive of `data_dir`; any input `extract` reads)."""
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    problems = problems if problems is not None else ProblemLog()
    types = read_semgroups(semgroups_path(data_dir))
    cache_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, bool] = {}
    seconds: dict[str, float] = {}
    with _locked(cache_dir / ".assets.lock"):
        started = time.perf_counter()
        if kg_dir is None:
            kg_dir, built["graph"] = _ensure_graph(data_dir, cache_dir, problems, progress)
        else:
            kg_dir, built["graph"] = Path(kg_dir), False
            require_tables(kg_dir)
        seconds["graph"] = time.perf_counter() - started

        started = time.perf_counter()
        index, built["index"] = ensure_index(kg_dir, cache_dir, types, progress=progress)
        config = ExtractionConfig(index.directory, data_dir / LEXICONS)
        seconds["index"] = time.perf_counter() - started

        started = time.perf_counter()
        if mentions is None:
            corpus = Path(reports) if reports is not None else data_dir / IU_REPORTS
            mentions, built["mentions"] = _ensure_mentions(corpus, index, config, cache_dir, workers, problems, progress)
        else:
            mentions, built["mentions"] = Path(mentions), False
            if not mentions.is_file():
                raise MissingInputError(f"mentions file is missing: {mentions}")
        seconds["mentions"] = time.perf_counter() - started
    for step in STEPS:
        log.info("%s: %s in %.1f s", step, "built" if built[step] else "up to date", seconds[step])
    return Assets(kg_dir, index, config, mentions, types, built, seconds)


def load_reports(path: Path, problems: ProblemLog | None = None) -> list[tuple[Report, list[Mention]]]:
    """All (report, mentions) of a mentions file; warns when it kept no report text (a `medkg extract run` file), since
    label contexts and normal statements then cannot be read."""
    found = list(read_reports(path, problems if problems is not None else ProblemLog()))
    if found and not any(report.text for report, _ in found):
        log.warning("%s holds no report text: label contexts and normal statements will not be applied "
                    "(ensure_assets writes mentions with text)", path)
    return found


def report_mentions(mentions_by_report: ReportMentions) -> Iterator[tuple[Report, list[Mention]]]:
    """(report, mentions) from a mapping id -> mentions, or from pairs whose first item is a Report or an id."""
    items = mentions_by_report.items() if isinstance(mentions_by_report, Mapping) else mentions_by_report
    for report, found in items:
        yield (report if isinstance(report, Report) else Report(str(report), "", "mentions")), list(found)


def _ensure_graph(data_dir: Path, cache_dir: Path, problems: ProblemLog, progress: bool) -> tuple[Path, bool]:
    target, stamp_path = cache_dir / GRAPH_DIR, cache_dir / GRAPH_STAMP
    stamp = _graph_stamp(data_dir)
    if (target / MANIFEST).exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return target, False
    log.info("building the open radiology graph from %s into %s", data_dir, target)
    stamp_path.unlink(missing_ok=True)  # a build that fails part-way must not leave an old stamp vouching for it
    build_open_graph(data_dir, target, problems, progress)
    with atomic_open(stamp_path) as f:
        json.dump(stamp, f)
    return target, True


def _graph_stamp(data_dir: Path) -> dict[str, object]:
    inputs = [SEMGROUPS_FILE, *(relative for _, relative in SOURCE_FILES.values())]
    return {"version": GRAPH_VERSION, "data_dir": str(data_dir.resolve()),
            "files": {relative: _tree_stat(data_dir / relative) for relative in inputs}}


def _ensure_mentions(corpus: Path, index: ConceptIndex, config: ExtractionConfig, cache_dir: Path, workers: int,
                     problems: ProblemLog, progress: bool) -> tuple[Path, bool]:
    if not corpus.exists():
        raise MissingInputError(f"reports not found: {corpus}")
    rules = files("extract").joinpath("data")
    key = {
        "version": MENTIONS_VERSION,
        "reports": _content_digest(corpus),
        "index": json.loads((index.directory / "index.json").read_text()),
        "lexicons": _content_digest(Path(config.lexicon_dir)) if config.lexicon_dir else None,
        "rules": hashlib.sha256(b"".join(rules.joinpath(name).read_bytes()
                                         for name in ("radiology_phrases.tsv", "radiology_context.tsv"))).hexdigest(),
        "fuzzy": config.fuzzy,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"{corpus.name.split('.')[0]}-{hashlib.sha1(str(corpus.resolve()).encode()).hexdigest()[:8]}"
    path = cache_dir / MENTIONS_DIR / f"{stem}-{digest}.jsonl"
    if path.exists():
        return path, False
    log.info("extracting the mentions of %s with %d workers into %s", corpus, workers, path)
    count = write_mentions(path, extract_reports(corpus, config, problems, workers, progress), text=True)
    log.info("%d reports", count)
    for old in path.parent.glob(f"{stem}-*.jsonl"):
        if old != path:
            old.unlink(missing_ok=True)
    return path, True


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _tree_stat(path: Path) -> list[list[object]]:
    """[relative name, size, mtime] of a file, or of every file under a folder: cheap, for large inputs."""
    if not path.exists():
        raise MissingInputError(f"open graph input is missing: {path}")
    return [[str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in _files(path)]


def _content_digest(path: Path) -> str:
    """sha256 over the names and bytes of a file, or of every file under a folder."""
    digest = hashlib.sha256()
    for p in _files(path):
        digest.update(str(p.relative_to(path) if p != path else "").encode() + b"\0")
        with open(p, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` for the block (no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

