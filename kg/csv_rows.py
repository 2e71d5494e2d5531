"""Rows of a CSV file with the line each starts on (quoted fields may span lines), for readers that
report bad rows by file and line: one way to open and one loop for every CSV reader of medkg.

A bad row costs that row alone. `open_csv` decodes with `surrogateescape`, so an undecodable byte
never stops the text stream (a strict decoder fails a whole read-ahead chunk, far from the row that
holds the byte); `numbered_rows` then reports each row that holds one, by the line the row starts
on, and goes on; so does a row with a broken quote when the reader is strict (`csv.reader(stream,
strict=True)`), except a quote never closed, which takes the rest of the file and is reported as
such. Fields may be as long as memory allows (a 200 KB report is a valid report), and a
UTF-8 byte-order mark before the header is dropped.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .problems import ProblemLog

FIELD_LIMIT = 2**31 - 1  # csv's default (131,072 characters) rejects long reports; this is the C long bound
_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8


def open_csv(path: Path) -> IO[str]:
    """A CSV or CSV.gz file as text for `csv.reader`: UTF-8, a BOM dropped, bad bytes kept for `numbered_rows`."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    if Path(path).name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def undecodable(fields: list[str]) -> bool:
    """Whether a row read through `open_csv` holds a byte that is not UTF-8 (a header, say)."""
    return any(_UNDECODED.search(field) for field in fields)


def numbered_rows(path: Path, reader: Any, problems: ProblemLog) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each non-blank row of `reader` past where it stands (after its header).

    A row that is not UTF-8 or that csv cannot parse is reported with the line it starts on and
    skipped; reading goes on with the next row."""
    line = reader.line_num + 1  # where the next row starts
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:  # with a strict reader: a broken quote; csv starts afresh on the next line
            if "unexpected end of data" in str(e):
                problems.report(path, line, "csv", "a quote opened in this row is never closed: the rest of the file "
                                "was read as this one row, which is skipped")
            else:
                problems.report(path, line, "csv", f"{e}; row skipped")
            line = reader.line_num + 1
            continue
        except UnicodeDecodeError as e:  # a stream opened without open_csv: csv cannot go on past it
            problems.report(path, line, "encoding", f"stopped reading: {e}")
            return
        if row is None:
            return
        row_line, line = line, reader.line_num + 1
        if undecodable(row):
            problems.report(path, row_line, "encoding", "not UTF-8; row skipped")
            continue
        if row and any(field.strip() for field in row):
            yield row_line, row
