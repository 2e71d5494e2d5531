"""The demo's stages run in order, each cached: a stage whose inputs have not changed since it last finished is
skipped, `--from STAGE` reruns from a stage on, and a failure names its stage and keeps what came before.

A stage's key digests its settings, the files it reads (size and modification time) and the keys of the stages
before it; once a stage runs, every stage after it runs too, since what it wrote may differ from before. `OUT/stages.json` records each finished
stage's key, time and summary (what the report page shows); it is rewritten atomically after every stage, so an
interrupted demo resumes at the stage it was in, and a training stage stopped midway resumes its runs from their
last checkpoints. A stage that runs anew (an input changed, `--from`) starts its runs from scratch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kg.atomic import atomic_open
from kg.errors import MedkgError
from kg.problems import ProblemLog

STAGES_FILE = "stages.json"
PROBLEMS_DIR = "problems"  # one file per stage that met bad input: every problem, with file and line


class StageFailed(MedkgError):
    """A stage stopped on a user error (missing or bad input): the message names the stage."""


@dataclass
class Stage:
    name: str
    doing: str                                  # what the progress line says, e.g. "training the aligners"
    expected_seconds: float                     # on 2 CPU cores, for the time-left estimate
    run: Callable[[ProblemLog], dict[str, Any]]  # does the work, reporting bad input; returns the summary the report shows
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)    # files and folders read (their stamps join the key)
    outputs: list[Path] = field(default_factory=list)   # what must exist for a cached stage to count as done
    # Training runs the stage resumes from: kept when the stage resumes its own interrupted attempt (same key),
    # cleared when it runs anew (inputs changed, --from): a finished run resumed would otherwise come back unchanged.
    runs: list[Path] = field(default_factory=list)
    paced: bool = True                          # False: its time is a budget the machine's pace does not change


def stamp(paths: Iterable[Path]) -> list[list[Any]]:
    """(path, size, mtime) of each file, folders walked; a missing path stamps as missing."""
    stamps = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat() if file.exists() else None
            stamps.append([str(file), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1])
    return stamps


def stage_key(stage: Stage, upstream: str) -> str:
    blob = json.dumps({"stage": stage.name, "settings": stage.settings, "inputs": stamp(stage.inputs),
                       "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_records(out: Path) -> dict[str, dict[str, Any]]:
    path = out / STAGES_FILE
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):  # a damaged record only costs a rerun
        return {}
    return records if isinstance(records, dict) else {}


def _write_records(out: Path, records: dict[str, dict[str, Any]]) -> None:
    with atomic_open(out / STAGES_FILE) as f:
        json.dump(records, f, indent=2, default=str)


def run_stages(stages: list[Stage], out: Path, start_from: str | None = None,
               say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> dict[str, dict[str, Any]]:
    """Run `stages` in order into `out`; returns every stage's record. `start_from`: rerun that stage and the
    ones after it whatever their keys."""
    names = [s.name for s in stages]
    if start_from is not None and start_from not in names:
        raise MedkgError(f"unknown stage {start_from!r}; the stages are {', '.join(names)}")
    out.mkdir(parents=True, exist_ok=True)
    records = read_records(out)
    forced = False
    upstream = ""
    started = time.perf_counter()
    spent_expected = spent_actual = 0.0  # this invocation's pace against the expected times
    for number, stage in enumerate(stages, 1):
        forced = forced or stage.name == start_from
        key = stage_key(stage, upstream)
        upstream = key
        record = records.get(stage.name, {})
        if not forced and record.get("key") == key and all(p.exists() for p in stage.outputs):
            say(f"medkg demo [{number}/{len(stages)}] {stage.name}: up to date, skipped "
                f"(inputs unchanged since {record.get('finished', '?')})")
            continue
        # this machine's pace so far against the expected times, kept within reason: a cached or tiny stage
        # says little about the long ones
        pace = min(4.0, max(0.75, spent_actual / spent_expected)) if spent_expected > 30 else 1.0
        remaining = sum(s.expected_seconds * (pace if s.paced else 1.0) for s in stages[number - 1:])
        say(f"medkg demo [{number}/{len(stages)}] {stage.name}: {stage.doing} "
            f"(elapsed {_clock(time.perf_counter() - started)}, about {_clock(remaining)} left)")
        if record.get("started") != key:  # not the interrupted attempt of this same stage: start its runs afresh
            for run in stage.runs:
                shutil.rmtree(run, ignore_errors=True)
        records[stage.name] = {"started": key}  # no finished record: a stage that fails or stops is not counted done
        _write_records(out, records)
        begun = time.perf_counter()
        problems = ProblemLog(max_logged=0)  # counted and written to a file, not printed one by one
        try:
            summary = stage.run(problems)
        except MedkgError as error:
            _write_problems(out, stage.name, problems)
            raise StageFailed(f"stage {stage.name!r} failed: {error}. The stages before it are kept in {out}; "
                              f"rerun with `--from {stage.name}` once it is fixed") from error
        except BaseException:
            _write_problems(out, stage.name, problems)
            say(f"medkg demo: stage {stage.name!r} stopped; the stages before it are kept in {out}")
            raise
        seconds = time.perf_counter() - begun
        listed = _write_problems(out, stage.name, problems)
        if listed:
            summary = {**summary, "problems": problems.summary(), "problems_file": str(listed.relative_to(out))}
            say(f"medkg demo: {stage.name}: {problems.summary()} in the input, skipped and listed in {listed}")
        spent_expected += stage.expected_seconds
        spent_actual += seconds
        forced = True  # what this stage wrote may differ from before: every later stage reads it anew
        records[stage.name] = {"key": key, "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "summary": summary}
        _write_records(out, records)
    say(f"medkg demo: done in {_clock(time.perf_counter() - started)}; open {out / 'index.html'}")
    return records


def _write_problems(out: Path, stage: str, problems: ProblemLog) -> Path | None:
    path = out / PROBLEMS_DIR / f"{stage}.txt"
    if not len(problems):
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(exist_ok=True)
    problems.write(path)
    return path


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
