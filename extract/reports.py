"""Radiology reports in, `Report` records out, streamed, whatever the layout of the input.

`iter_reports(path, problems)` recognises
- the IU X-ray archive (`NLMCXR_reports.tgz`, any `.tgz` / `.tar.gz` / `.tar`) or a folder holding its
  XML files: source "iu-xray", id "CXR<n>"; the text is the present sections in the order
  COMPARISON, INDICATION, FINDINGS, IMPRESSION, each as "TITLE: body", joined by a blank line, and
  `sections` hold the exact offsets of each body. Reports without any section are kept, with an
  empty text and no sections, so the archive gives all its 3,955 reports;
- a `.csv` file whose header has `id` and `text` columns (any case, other columns ignored; quoted
  multi-line texts of any length allowed): source "csv";
- a folder of `.txt` reports (UTF-8, a BOM is dropped), searched recursively in sorted order (MIMIC-CXR:
  `files/p10/p10000032/s50414267.txt`): id = file stem, source "txt".
A folder with XML files is read as IU X-ray even if it also holds `.txt` files.

CSV and txt texts are kept as read (offsets index them as they are) and split into sections by a
`SectionSplitter`. Bad input is reported to the `ProblemLog` and skipped: a CSV row with an empty
id or text, an id seen before or a byte that is not UTF-8 (with the line the row starts on; the rows
after it are read), a txt file that is not UTF-8
(with the line of the first bad byte; not decoded with replacement characters, so no made-up text
reaches the labels), unreadable or empty. Any other path raises `ValueError`; a missing one
`FileNotFoundError`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from extract.model import Report, Section
from extract.sections import SectionSplitter, default_splitter
from kg.csv_rows import numbered_rows, open_csv, undecodable
from kg.errors import InputError, MissingInputError
from kg.problems import ProblemLog
from kg.sources import iu_xray

__all__ = ["IU_SECTION_ORDER", "LAYOUTS", "iter_reports", "iu_report", "read_txt_report"]

IU_SECTION_ORDER = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")
LAYOUTS = (
    "the IU X-ray archive (.tgz/.tar.gz) or a folder of its XML files, "
    "a .csv file with 'id' and 'text' columns, or a folder of .txt reports (MIMIC-CXR layout)"
)


def iter_reports(path: Path, problems: ProblemLog, splitter: SectionSplitter | None = None) -> Iterator[Report]:
    """Reports of `path`, one at a time, in the input's order (files sorted by path).

    `splitter` sections CSV and txt reports; by default `default_splitter()` (built once from
    `default_lexicon_dir()`).
    The kind of input is recognised when this is called; a CSV header without `id` and `text`
    raises `ValueError` at the first `next()`.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"reports not found: {path}")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(ARCHIVE_SUFFIXES):
            return _iu_reports(path, problems)
        if name.endswith(".csv"):
            return _csv_reports(path, problems, splitter or default_splitter())
    elif path.is_dir():
        if next(path.rglob("*.xml"), None) is not None:
            return _iu_reports(path, problems)
        if next(path.rglob("*.txt"), None) is not None:
            return _txt_reports(path, problems, splitter or default_splitter())
    raise InputError(f"unrecognised reports input: {path}; expected {LAYOUTS}")


def iu_report(report: iu_xray.IUReport) -> Report:
    """An IU X-ray report as one text, "TITLE: body" per section, with each body's offsets."""
    parts: list[str] = []
    sections: list[Section] = []
    at = 0
    for name in IU_SECTION_ORDER:
        body = report.sections.get(name)
        if not body:
            continue
        if parts:
            parts.append("\n\n")
            at += 2
        head = f"{name}: "
        parts += (head, body)
        sections.append(Section(name, at + len(head), at + len(head) + len(body)))
        at += len(head) + len(body)
    return Report(report.id, "".join(parts), "iu-xray", sections)


def _iu_reports(path: Path, problems: ProblemLog) -> Iterator[Report]:
    for report in iu_xray.iter_reports(path, problems):
        yield iu_report(report)


def _csv_reports(path: Path, problems: ProblemLog, splitter: SectionSplitter) -> Iterator[Report]:
    with open_csv(path) as stream:
        reader = csv.reader(stream, strict=True)  # a broken quote is a reported row, not a silently merged one
        try:
            header = next(reader, None)
            if header and undecodable(header):
                raise csv.Error("not UTF-8")
        except csv.Error as e:
            raise InputError(f"{path}: unreadable CSV header ({e}); expected {LAYOUTS}") from e
        columns = [column.strip().lower() for column in header or []]
        if "id" not in columns or "text" not in columns:
            raise InputError(f"{path}: CSV header {header!r} lacks an 'id' and a 'text' column; expected {LAYOUTS}")
        id_at, text_at = columns.index("id"), columns.index("text")
        seen: set[str] = set()
        for row_line, row in numbered_rows(path, reader, problems):
            report_id = row[id_at].strip() if id_at < len(row) else ""
            text = row[text_at] if text_at < len(row) else ""
            if not report_id:
                problems.report(path, row_line, "missing id", "row without an id, skipped")
            elif not text.strip():
                problems.report(path, row_line, "empty report", f"report {report_id!r} has no text, skipped")
            elif report_id in seen:
                problems.report(path, row_line, "duplicate id", f"report {report_id!r} seen before, skipped")
            else:
                seen.add(report_id)
                yield Report(report_id, text, "csv", splitter.split(text))


def read_txt_report(file: Path, problems: ProblemLog) -> str | None:
    """The text of one .txt report as read (UTF-8, a BOM dropped), or None once `problems` says why it is unusable.

    Public so that readers which find report files by their own layout (MIMIC-CXR studies) apply the same rules."""
    try:
        data = file.read_bytes()
    except OSError as e:
        problems.report(file, None, "unreadable", f"{e.strerror or e}, skipped")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        problems.report(file, line, "encoding", f"not UTF-8 ({e.reason} at byte {e.start}), skipped")
        return None
    if not text.strip():
        problems.report(file, None, "empty report", "no text, skipped")
        return None
    return text


def _txt_reports(path: Path, problems: ProblemLog, splitter: SectionSplitter) -> Iterator[Report]:
    seen: dict[str, Path] = {}
    for file in sorted(path.rglob("*.txt")):
        if not file.is_file():
            continue
        text = read_txt_report(file, problems)
        if text is None:
            continue
        if file.stem in seen:
            problems.report(file, None, "duplicate id", f"report {file.stem!r} seen before in {seen[file.stem]}, skipped")
            continue
        seen[file.stem] = file
        yield Report(file.stem, text, "txt", splitter.split(text))

