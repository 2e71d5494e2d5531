"""Entity-extraction benchmark: medkg's report pipeline against plain QuickUMLS, on the same index.

Why: `medkg extract run` has to keep up with report archives (the 3,955 IU X-ray reports, and
MIMIC-CXR's 227k). It also has to find at least what QuickUMLS finds on the same dictionary. The
goals are: at least 3x the reports/s of plain QuickUMLS matching, no loss of accuracy, and at
least 500 reports/s on 2 cores with `--workers 2`. Memory must stay flat over the run, because
reports are streamed. In one run this bench

- builds the concept index of `--kg` (`extract.index.ensure_index`) in `--home`, and times the
  build and a cached load. Neither is part of any rate;
- times `extract.pipeline.extract_reports` over every report with 1 worker and with `--workers`.
  Each pass runs in a fresh interpreter (spawn) that does what `medkg extract labels` does: it
  loads the cached index and the ChestX-ray14 label set, then labels every report. So a pass pays
  for its own lazy imports and worker start-up, and inherits nothing from this process (the index
  build imports quickumls, spaCy and NLTK). A pass's time is the wall time from calling
  `extract_reports` to its last report: reading the archive, worker start-up, sections,
  sentences, matching, assertions, and `label_report` on each result;
- times plain QuickUMLS (`QuickUMLS.match`, jaccard, `--threshold`, window 5, a blank spaCy
  tokenizer, the accepted semantic types of every concept the index keeps) on each report's text,
  in one process. It reads the same archive inside the timed loop, so both sides pay for the XML.
  Its construction is not timed. This side does matching only: no sections, sentences or assertions;
- measures accuracy: the same pipeline is run a second time with the matching step done by
  QuickUMLS (`QuickUMLSMatcher`) instead of `ConceptMatcher`. Both variants' ChestX-ray14
  positives (value "1") are scored against the IU manual MeSH annotations (`tests/iu_mesh.py`);
- samples the RSS of the pass's main process and of its pool workers at 10%, 50% and 100% of
  the reports of the `--workers` pass. It also reports the peak RSS of the main process (VmHWM:
  `ru_maxrss` of a spawned interpreter still holds the RSS of the process that forked it) and
  of its children (`RUSAGE_CHILDREN`), and the CPU seconds of both.

Run from the repository root (the open graph is built into `--kg` first if it is missing):

    .venv/bin/python bench/extract.py [--kg out/open-kg] [--reports ../shared/data/iu-xray/NLMCXR_reports.tgz]
                                      [--workers 2] [--threshold 0.9] [--home DIR] [--profile]

`--profile` also runs a 1-worker pass under cProfile, in a fresh process, and prints where the
time goes: archive, start-up, sentences, exact and approximate matching, simstring, assertions,
labels. The run exits 1 when something goes wrong: the two medkg passes disagree, or a pass
loses reports. A missed speed or accuracy goal is only reported. At the full size the run takes
about 40 s (70 s with `--profile`). Other load on the machine slows every pass: the last line
gives the load average.
"""
from __future__ import annotations

import sys
from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from extract import matcher as matcher_module  # noqa: E402
from extract import sections as sections_module  # noqa: E402
from extract import sentences as sentences_module  # noqa: E402
from extract.index import EXCLUDED_GROUPS, ConceptIndex, ensure_index, stopwords  # noqa: E402
from extract.labels import PRESENT, LabelSet, label_report, load_label_set  # noqa: E402
from extract.matcher import Match  # noqa: E402
from extract.pipeline import ExtractionConfig, Extractor, extract_reports  # noqa: E402
from extract.reports import iter_reports  # noqa: E402
from extract.sections import default_lexicon_dir  # noqa: E402
from kg import normalize  # noqa: E402
from kg.problems import ProblemLog  # noqa: E402
from kg.semgroups import read_semgroups  # noqa: E402
from medkg.api.kg import semgroups_path  # noqa: E402
from tests.iu_mesh import LABELS, Scores, mesh_labels, score  # noqa: E402

GOAL_RATE = 500.0
GOAL_SPEEDUP = 3.0
SAMPLE_AT = (0.1, 0.5, 1.0)
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20


# ---- memory -------------------------------------------------------------------------------------

def rss_mb(pid: int | str = "self") -> float:
    """Resident set size now, from /proc/<pid>/statm; 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE / MB
    except (OSError, IndexError, ValueError):
        return 0.0


def child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(set(pids))


def peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kilobytes


def hwm_mb(pid: int | str = "self") -> float:
    """Peak RSS of a process's current image (VmHWM). Unlike ru_maxrss it does not carry over the
    RSS of the parent that forked the interpreter before exec."""
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


# ---- passes -------------------------------------------------------------------------------------

def cold_caches() -> None:
    """Empty the module-level caches that a previous pass in this process (or a forked parent) filled."""
    for module, name in ((matcher_module, "_norm"), (sentences_module, "_split"),
                         (sections_module, "_canonical"), (normalize, "name_key")):
        function = getattr(module, name, None)
        if hasattr(function, "cache_clear"):
            function.cache_clear()


@dataclass
class PassResult:
    name: str
    reports: int = 0
    wall: float = 0.0
    first: float = 0.0  # seconds to the first report: start-up
    mentions: int = 0
    assertions: Counter[str] = field(default_factory=Counter)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    label_seconds: float = 0.0
    rss: dict[float, tuple[float, list[float]]] = field(default_factory=dict)  # fraction -> (main MB, [worker MB])
    worker_peak: float = 0.0  # largest VmHWM of a worker, read at the last report
    cpu_self: float = 0.0  # CPU seconds of the pass: this process, and its (finished) workers
    cpu_children: float = 0.0
    problems: int = 0
    # set by a pass in a fresh process
    interpreter: float = 0.0  # seconds to start Python and import the bench's modules
    setup: float = 0.0  # seconds to load the cached index and the label set
    peak_self: float = 0.0
    peak_children: float = 0.0
    baseline_rss: float = 0.0
    profile: str = ""

    @property
    def rate(self) -> float:
        return self.reports / self.wall if self.wall else 0.0

    @property
    def steady_rate(self) -> float:
        """Reports/s after the first report, start-up left out."""
        return (self.reports - 1) / (self.wall - self.first) if self.wall > self.first else 0.0

    def positives(self, columns: list[str]) -> dict[str, set[str]]:
        return {rid: {c for c, v in zip(columns, values, strict=True) if v == PRESENT} for rid, values in self.labels.items()}


def read_pass(path: Path) -> PassResult:
    """Reading the archive alone: the floor under every other pass."""
    result = PassResult("read")
    problems = ProblemLog()
    start = time.perf_counter()
    for _ in iter_reports(path, problems):
        result.reports += 1
    result.wall = time.perf_counter() - start
    result.problems = len(problems)
    return result


def medkg_pass(path: Path, config: ExtractionConfig, label_set: LabelSet, workers: int, total: int) -> PassResult:
    cold_caches()
    result = PassResult(f"medkg, {workers} worker{'s' if workers > 1 else ''}")
    marks = {max(1, round(total * f)): f for f in SAMPLE_AT}
    columns = label_set.columns
    problems = ProblemLog()
    cpu_self, cpu_children = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for report, mentions in extract_reports(path, config, problems, workers=workers, progress=False):
        result.reports += 1
        if result.reports == 1:
            result.first = time.perf_counter() - start
        result.mentions += len(mentions)
        result.assertions.update(m.assertion for m in mentions)
        t = time.perf_counter()
        values = label_report(report, mentions, label_set)
        result.label_seconds += time.perf_counter() - t
        result.labels[report.id] = tuple(values[c] for c in columns)
        if result.reports in marks:
            result.rss[marks[result.reports]] = (rss_mb(), [rss_mb(pid) for pid in child_pids()])
        if result.reports == total:
            result.worker_peak = max((hwm_mb(pid) for pid in child_pids()), default=0.0)
    result.wall = time.perf_counter() - start
    result.cpu_self = cpu_seconds(resource.RUSAGE_SELF) - cpu_self
    result.cpu_children = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_children
    return result


class QuickUMLSMatcher:
    """`ConceptMatcher.match` answered by QuickUMLS: its best candidate per span, offsets into `text`."""

    def __init__(self, quickumls):
        self.quickumls = quickumls

    def match(self, text: str, start: int = 0, end: int | None = None) -> list[Match]:
        end = len(text) if end is None else end
        found = []
        for candidates in self.quickumls.match(text[start:end], best_match=True, ignore_syntax=False):
            best = candidates[0]  # QuickUMLS sorts a span's candidates by similarity + preferred
            found.append(Match(best["cui"], start + best["start"], start + best["end"], round(best["similarity"], 3)))
        found.sort(key=lambda m: m.start)
        return found


def accepted_semtypes(index: ConceptIndex) -> set[str]:
    return set().union(*(c.semantic_types for c in index.concepts.values() if c.group and c.group not in EXCLUDED_GROUPS))


def make_quickumls(index: ConceptIndex, threshold: float, scratch: Path):
    """QuickUMLS on the index's own installation, with NLTK's English stopwords from medkg's list (no download)."""
    import nltk
    import spacy
    from quickumls import QuickUMLS

    nltk_dir = scratch / "nltk_data"
    corpus = nltk_dir / "corpora" / "stopwords"
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "english").write_text("\n".join(sorted(stopwords())) + "\n", encoding="utf-8")
    if str(nltk_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_dir))
    quickumls = QuickUMLS(str(index.quickumls_path), threshold=threshold, similarity_name="jaccard", window=5,
                          accepted_semtypes=accepted_semtypes(index), spacy_component=True)
    quickumls.nlp = spacy.blank("en")
    return quickumls


def quickumls_pass(path: Path, quickumls) -> PassResult:
    result = PassResult("QuickUMLS")
    problems = ProblemLog()
    start = time.perf_counter()
    for report in iter_reports(path, problems):
        result.reports += 1
        result.mentions += len(quickumls.match(report.text, best_match=True, ignore_syntax=False))
    result.wall = time.perf_counter() - start
    return result


def quickumls_pipeline_pass(path: Path, config: ExtractionConfig, index: ConceptIndex, quickumls, label_set: LabelSet) -> PassResult:
    """medkg's pipeline (sections, sentences, assertions, labels) with QuickUMLS doing the matching."""
    cold_caches()
    result = PassResult("medkg pipeline, QuickUMLS matching")
    extractor = Extractor(config, index)  # fresh: its sentence cache must not hold ConceptMatcher results
    extractor.matcher = QuickUMLSMatcher(quickumls)
    columns = label_set.columns
    problems = ProblemLog()
    start = time.perf_counter()
    for report in iter_reports(path, problems):
        mentions = extractor.mentions(report)
        result.reports += 1
        result.mentions += len(mentions)
        result.assertions.update(m.assertion for m in mentions)
        values = label_report(report, mentions, label_set)
        result.labels[report.id] = tuple(values[c] for c in columns)
    result.wall = time.perf_counter() - start
    return result


# Where the time of a 1-worker pass goes: (label, file, function) whose cumulative time is shown.
BREAKDOWN = (
    ("reading the archive (tar + XML)", "iu_xray.py", "iter_reports"),
    ("imports during the pass", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("Extractor start-up (index, lexicons)", "pipeline.py", "__init__"),
    ("section splitting (reports without sections)", "sections.py", "split"),
    ("sentence splitting", "sentences.py", "split_sentences"),
    ("matching, all", "matcher.py", "match"),
    ("  phrase rules + exact dictionary path", "matcher.py", "_exact"),
    ("  approximate path, all", "matcher.py", "_approximate"),
    ("    simstring look-ups (C)", "~", "<built-in method pysimstring._simstring.reader_retrieve>"),
    ("assertion engine", "assertion.py", "sentence"),
    ("labels (label_report)", "labels.py", "label_report"),
)


def profile_breakdown(profiler: cProfile.Profile, total: float, top: int = 25) -> str:
    stats = pstats.Stats(profiler).strip_dirs()
    rows = [f"{'part':<62}{'calls':>9}{'seconds':>9}{'share':>7}"]
    for label, file, function in BREAKDOWN:
        found = [(v[1], v[3]) for (f, _, name), v in stats.stats.items() if f == file and name == function]
        if found:
            calls, seconds = sum(c for c, _ in found), sum(s for _, s in found)
            rows.append(f"{label:<62}{calls:>9,}{seconds:>9.2f}{seconds / total:>7.0%}")
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("tottime").print_stats(top)
    return "\n".join(rows) + "\n" + stream.getvalue()


@dataclass
class Job:
    kg: Path
    home: Path
    data_dir: Path | None
    reports: Path
    workers: int
    total: int
    profile: bool = False


def _fresh_process_pass(conn, job: Job, started: float) -> None:
    """One medkg pass as `medkg extract labels` runs it: a fresh process, a cached index, a label set."""
    try:
        entered = time.time()
        start = time.perf_counter()
        index, _ = ensure_index(job.kg, job.home, read_semgroups(semgroups_path(job.data_dir)), progress=False)
        label_set = load_label_set("chestxray14", index, job.kg)
        config = ExtractionConfig(index.directory, default_lexicon_dir())
        setup = time.perf_counter() - start
        profiler = cProfile.Profile() if job.profile else None
        if profiler:
            profiler.enable()
        before = rss_mb()
        result = medkg_pass(job.reports, config, label_set, job.workers, job.total)
        if profiler:
            profiler.disable()
            result.profile = profile_breakdown(profiler, result.wall)
        result.interpreter = entered - started
        result.setup = setup
        result.peak_self = hwm_mb()
        result.peak_children = peak_mb(resource.RUSAGE_CHILDREN)
        result.baseline_rss = before
        conn.send(result)
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        conn.send(e)
        raise
    finally:
        conn.close()


def in_fresh_process(job: Job) -> PassResult:
    """Run a pass in a new interpreter (spawn), so that it pays for its own imports and start-up and
    inherits nothing this process has loaded (the index writer imports quickumls, spaCy and NLTK)."""
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_fresh_process_pass, args=(send, job, time.time()))
    process.start()
    send.close()
    try:
        answer = receive.recv()
    except EOFError:
        answer = RuntimeError(f"the pass process died (exit code {process.join() or process.exitcode})")
    process.join()
    if isinstance(answer, BaseException):
        raise RuntimeError(f"medkg pass with {job.workers} worker(s) failed: {answer!r}") from answer
    return answer


# ---- report -------------------------------------------------------------------------------------

def line(result: PassResult, extra: str = "") -> str:
    return f"{result.name:<16}: {result.reports:,} reports in {result.wall:.2f} s = {result.rate:,.0f} reports/s{extra}"


def accuracy_table(medkg: Scores, quick: Scores) -> str:
    head = f"{'label':<19}{'support':>8}   {'medkg P':>7} {'R':>6} {'F1':>6}   {'QuickUMLS P':>11} {'R':>6} {'F1':>6}"
    rows = [head, "-" * len(head)]
    for label in [*LABELS, "micro"]:
        a = medkg.micro if label == "micro" else medkg.per_label[label]
        b = quick.micro if label == "micro" else quick.per_label[label]
        if label == "micro":
            rows.append("-" * len(head))
        rows.append(f"{label:<19}{a.support:>8}   {a.precision:>7.3f} {a.recall:>6.3f} {a.f1:>6.3f}   "
                    f"{b.precision:>11.3f} {b.recall:>6.3f} {b.f1:>6.3f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kg", type=Path, default=Path("out/open-kg"), help="RRF directory of the graph (default: out/open-kg)")
    parser.add_argument("--reports", type=Path, default=Path("../shared/data/iu-xray/NLMCXR_reports.tgz"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.9, help="QuickUMLS similarity threshold (default 0.9)")
    parser.add_argument("--home", type=Path, default=None,
                        help="where the index is cached (default: $MEDKG_HOME, else a temporary folder)")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with the semantic groups file (default: $MEDKG_DATA_DIR or ../shared/data)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the index even when --home has it cached")
    parser.add_argument("--profile", action="store_true", help="also profile the 1-worker pass with cProfile")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be 2 or more (the 1-worker pass always runs)")

    with tempfile.TemporaryDirectory(prefix="medkg-bench-") as tmp:
        scratch = Path(tmp)
        home = args.home or (Path(os.environ["MEDKG_HOME"]) if os.environ.get("MEDKG_HOME") else scratch / "home")
        kg_seconds = _root.ensure_kg(args.kg, args.data_dir)
        if kg_seconds is not None:
            print(f"graph built in {kg_seconds:.1f} s")
        types = read_semgroups(semgroups_path(args.data_dir))

        start = time.perf_counter()
        index, built = ensure_index(args.kg, home, types, rebuild=args.rebuild, progress=False)
        build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        index, _ = ensure_index(args.kg, home, types, progress=False)
        cached_seconds = time.perf_counter() - start
        index_line = (f"index: {len(index.terms):,} terms, {len(index.concepts):,} concepts, "
                      + (f"built in {build_seconds:.1f} s" if built else "already cached (--rebuild times a build)")
                      + f" (cached: {cached_seconds:.2f} s)")
        print(index_line, flush=True)

        config = ExtractionConfig(index.directory, default_lexicon_dir())
        label_set = load_label_set("chestxray14", index, args.kg)
        columns = label_set.columns
        start = time.perf_counter()
        Extractor(config)
        startup_seconds = time.perf_counter() - start
        print(f"Extractor construction (index, lexicons, phrase rules), in this process: {startup_seconds:.2f} s", flush=True)

        read = read_pass(args.reports)
        total = read.reports
        print(f"reading the archive alone: {total:,} reports in {read.wall:.2f} s = {read.rate:,.0f} reports/s", flush=True)

        job = Job(args.kg, home, args.data_dir, args.reports, 1, total)
        one = in_fresh_process(job)
        print(line(one, f"   (fresh process: {one.interpreter:.2f} s Python + imports, {one.setup:.2f} s cached index + "
                        f"label set, not counted; first report after {one.first:.2f} s; labelling {one.label_seconds:.2f} s)"), flush=True)
        many = in_fresh_process(Job(args.kg, home, args.data_dir, args.reports, args.workers, total))
        print(line(many, f"   (first report after {many.first:.2f} s; CPU: main process {many.cpu_self:.2f} s, "
                         f"workers {many.cpu_children:.2f} s; 1 worker: {one.cpu_self:.2f} s)"), flush=True)

        errors = []
        for result in (one, many):
            if result.reports != total:
                errors.append(f"{result.name}: {result.reports:,} reports, expected {total:,}")
        if one.labels != many.labels or one.mentions != many.mentions or one.assertions != many.assertions:
            differ = sum(1 for k in one.labels if one.labels[k] != many.labels.get(k))
            errors.append(f"1 worker and {args.workers} workers disagree: {one.mentions:,} vs {many.mentions:,} mentions, "
                          f"{differ:,} reports with other labels")

        start = time.perf_counter()
        quickumls = make_quickumls(index, args.threshold, scratch)
        quickumls_startup = time.perf_counter() - start
        print(f"QuickUMLS construction: {quickumls_startup:.2f} s (its imports already paid by the index build)"
              if built else f"QuickUMLS construction, imports included: {quickumls_startup:.2f} s", flush=True)
        quick = quickumls_pass(args.reports, quickumls)
        print(line(quick, f"   ({quick.mentions:,} matches)"), flush=True)
        if quick.reports != total:
            errors.append(f"QuickUMLS: {quick.reports:,} reports, expected {total:,}")

        variant = quickumls_pipeline_pass(args.reports, config, index, quickumls, label_set)
        print(f"medkg pipeline with QuickUMLS matching: {variant.reports:,} reports in {variant.wall:.2f} s = "
              f"{variant.rate:,.0f} reports/s", flush=True)

        truth = mesh_labels(args.reports)
        medkg_scores = score(truth, one.positives(columns))
        quick_scores = score(truth, variant.positives(columns))
        print(f"\nChestX-ray14 positives (value 1) vs IU manual MeSH, {len(truth):,} indexed reports "
              f"({total - len(truth):,} 'No Indexing' left out); the same pipeline, matching by medkg | by QuickUMLS:")
        print(accuracy_table(medkg_scores, quick_scores))
        for name, result in (("medkg", one), ("QuickUMLS matching", variant)):
            counts = ", ".join(f"{n:,} {a}" for a, n in sorted(result.assertions.items()))
            print(f"mentions, {name}: {result.mentions:,} ({counts})")

        if args.profile:
            profiled = in_fresh_process(Job(args.kg, home, args.data_dir, args.reports, 1, total, profile=True))
            print(f"\n== where the time goes: cProfile of a 1-worker pass in a fresh process "
                  f"({profiled.wall:.2f} s under the profiler; shares of that) ==")
            print(profiled.profile)

        samples = [many.rss.get(f, (0.0, [])) for f in SAMPLE_AT]
        main_rss = "/".join(f"{m:.0f}" for m, _ in samples)
        worker_rss = "/".join(f"{max(w, default=0):.0f}" for _, w in samples)
        speedup_one, speedup_many = one.rate / quick.rate, many.rate / quick.rate
        print("\n" + "=" * 100)
        print(index_line)
        print(line(one, f"   (start-up {one.first:.2f} s to the first report; {one.steady_rate:,.0f}/s after it)"))
        print(line(many, f"   (goal >= {GOAL_RATE:.0f}: {'met' if many.rate >= GOAL_RATE else 'MISSED'}; "
                         f"start-up {many.first:.2f} s to the first report; {many.steady_rate:,.0f}/s after it)"))
        print(line(quick, f" (threshold {args.threshold}, jaccard, matching only; construction not counted)"))
        verdict = lambda x: "met" if x >= GOAL_SPEEDUP else "MISSED"  # noqa: E731
        print(f"{'speed-up':<16}: {speedup_one:.1f}x (1 worker), {speedup_many:.1f}x ({args.workers} workers)    "
              f"(goal >= {GOAL_SPEEDUP:.0f}x: {verdict(speedup_one)} with 1 worker, {verdict(speedup_many)} with {args.workers}; "
              f"after start-up: {one.steady_rate / quick.rate:.1f}x, {many.steady_rate / quick.rate:.1f}x)")
        worse = [label for label in LABELS if medkg_scores.per_label[label].f1 < quick_scores.per_label[label].f1]
        print(f"accuracy (ChestX-ray14 vs IU MeSH, positive findings): medkg micro-F1 {medkg_scores.micro.f1:.3f}  |  "
              f"QuickUMLS matching micro-F1 {quick_scores.micro.f1:.3f}   "
              f"(no loss: {'met' if medkg_scores.micro.f1 >= quick_scores.micro.f1 else 'MISSED'}; "
              f"labels with a lower F1: {', '.join(worse) or 'none'})")
        print(f"{'memory':<16}: main RSS at 10/50/100%: {main_rss} MB (before the pass: {many.baseline_rss:.0f} MB); "
              f"largest worker RSS at 10/50/100%: {worker_rss} MB; peak main {many.peak_self:.0f} MB, "
              f"peak children {many.peak_children:.0f} MB ({args.workers} workers); 1-worker pass peak {one.peak_self:.0f} MB")
        print(f"{'load average':<16}: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
              f"(other processes on these CPUs slow every pass; compare runs on an idle machine)")
        for error in errors:
            print(f"ERROR: {error}", file=sys.stderr)
        return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
