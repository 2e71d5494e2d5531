"""The mentions file: JSON Lines, one object per report, `{"id": ..., "mentions": [{...}, ...]}`, each mention
with the fields of `extract.model.Mention`.

`medkg extract run` writes exactly that. A file written with `text=True` also keeps each report's text and
sections (`"text"`, `"sections": [[name, start, end], ...]`), which is what rules reading the words around a
mention need (label contexts, normal statements): `read_reports` gives those back as `Report` records.
Bad lines are reported to the ProblemLog with file and line, and skipped; a UTF-8 BOM before the first is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, Any

from kg.atomic import atomic_open
from kg.errors import MissingInputError
from kg.problems import ProblemLog

from .model import ASSERTIONS, Mention, Report, Section

MENTION_FIELDS = tuple(f.name for f in fields(Mention))
_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "text": (str,), "start": (int,), "end": (int,), "section": (str,), "assertion": (str,),
    "trigger": (str, type(None)), "similarity": (int, float), "semantic_types": (list,),
}  # fmt: skip
SOURCE = "mentions"  # Report.source of reports read back from a mentions file


def mention_record(report: Report, mentions: list[Mention], text: bool = False) -> dict[str, Any]:
    """One line of the file; with `text`, the report's text and sections too."""
    record: dict[str, Any] = {"id": report.id, "mentions": [asdict(m) for m in mentions]}
    if text:
        record["text"] = report.text
        record["sections"] = [[s.name, s.start, s.end] for s in report.sections]
    return record


class MentionWriter:
    """`with MentionWriter(path) as writer: writer.write(report, mentions)`: the file appears whole when the block ends
    without an error, and a previous file is left untouched otherwise."""

    def __init__(self, path: Path, text: bool = False) -> None:
        self.path, self.text, self.count = Path(path), text, 0
        self._context = atomic_open(self.path, "w", encoding="utf-8")
        self._handle: IO[str] | None = None

    def __enter__(self) -> MentionWriter:
        self._handle = self._context.__enter__()
        return self

    def write(self, report: Report, mentions: list[Mention]) -> None:
        assert self._handle is not None, "use MentionWriter in a with block"
        self._handle.write(json.dumps(mention_record(report, mentions, self.text), ensure_ascii=False) + "\n")
        self.count += 1

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


def write_mentions(path: Path, results: Iterable[tuple[Report, list[Mention]]], text: bool = False) -> int:
    """Write every (report, mentions) of `results` (e.g. `extract_reports(...)`) atomically; returns the report count."""
    with MentionWriter(path, text) as writer:
        for report, mentions in results:
            writer.write(report, mentions)
    return writer.count


def read_reports(path: Path, problems: ProblemLog) -> Iterator[tuple[Report, list[Mention]]]:
    """(report, mentions) per line, in file order. The report carries the text and sections when the file kept them
    (`text=True`), else an empty text. Lines that are not a valid record, and repeated ids, are reported and skipped."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"mentions file is missing: {path}")
    seen: set[str] = set()
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                report, mentions = _parse(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
            except UnicodeDecodeError as error:
                problems.report(path, number, "encoding", f"not UTF-8 ({error.reason} at byte {error.start})")
                continue
            except ValueError as error:
                problems.report(path, number, "bad record", str(error))
                continue
            if report.id in seen:
                problems.report(path, number, "duplicate id", f"report {report.id!r} appears on an earlier line")
                continue
            seen.add(report.id)
            yield report, mentions


def read_mentions(path: Path, problems: ProblemLog) -> Iterator[tuple[str, list[Mention]]]:
    """(report id, mentions) per valid line of a mentions file; see `read_reports`."""
    for report, mentions in read_reports(path, problems):
        yield report.id, mentions


def _parse(line: str) -> tuple[Report, list[Mention]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        raise ValueError('expected an object with a non-empty string "id"')
    items = record.get("mentions")
    if not isinstance(items, list):
        raise ValueError(f'report {record["id"]!r}: "mentions" is not a list')
    text = record.get("text", "")
    if not isinstance(text, str):
        raise ValueError(f'report {record["id"]!r}: "text" is not a string')
    mentions = [_mention(item, record["id"], i, text) for i, item in enumerate(items)]
    return Report(record["id"], text, SOURCE, _sections(record, text)), mentions


def _mention(item: Any, report_id: str, i: int, text: str) -> Mention:
    where = f"report {report_id!r}, mention {i}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: not an object")
    missing = [f for f in MENTION_FIELDS if f not in item]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    for name, types in _TYPES.items():
        if not isinstance(item[name], types) or isinstance(item[name], bool):
            raise ValueError(f"{where}: {name} is {item[name]!r}")
    if not all(isinstance(t, str) for t in item["semantic_types"]):
        raise ValueError(f"{where}: semantic_types is {item['semantic_types']!r}")
    if item["assertion"] not in ASSERTIONS:
        raise ValueError(f"{where}: assertion {item['assertion']!r} is not one of {', '.join(ASSERTIONS)}")
    if not 0 <= item["start"] <= item["end"] or (text and text[item["start"]:item["end"]] != item["text"]):
        raise ValueError(f"{where}: offsets {item['start']}-{item['end']} do not hold {item['text']!r}")
    return Mention(**{f: item[f] for f in MENTION_FIELDS})


def _sections(record: dict[str, Any], text: str) -> list[Section]:
    sections = record.get("sections", [])
    ok = isinstance(sections, list) and all(
        isinstance(s, list) and len(s) == 3 and isinstance(s[0], str) and all(isinstance(x, int) for x in s[1:])
        and 0 <= s[1] <= s[2] <= len(text) for s in sections)
    if not ok:
        raise ValueError(f'report {record["id"]!r}: "sections" is not a list of [name, start, end] within the text')
    return [Section(name, start, end) for name, start, end in sections]
