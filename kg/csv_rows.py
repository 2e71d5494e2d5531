"""Rows of a `csv.reader` with the line each starts on (quoted fields may span lines), for readers that
report bad rows by file and line: one loop for every CSV reader of medkg.

csv cannot resynchronise after an undecodable byte or a broken quote, so reading stops there: the error is
reported with the line it happened on, and every row before it is kept.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .problems import ProblemLog


def numbered_rows(path: Path, reader: Any, problems: ProblemLog) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each non-blank row of `reader` past where it stands (after its header)."""
    line = reader.line_num + 1  # where the next row starts
    while True:
        try:
            row = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as e:
            problems.report(path, line, "csv", f"stopped reading: {e}")
            return
        if row is None:
            return
        row_line, line = line, reader.line_num + 1
        if row and any(field.strip() for field in row):
            yield row_line, row
