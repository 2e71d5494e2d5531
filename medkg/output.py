"""Rows for people (aligned columns) and for programs (`--json`: a list of objects)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from typing import Any


def as_rows(items: list[Any]) -> list[dict[str, Any]]:
    rows = [asdict(i) if is_dataclass(i) else dict(i) for i in items]
    return [_flatten(r) for r in rows]


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    """`RETURN c` gives the concept's own keys (id, name, ...); `RETURN c.id` gives `id`."""
    if len(row) == 1:
        (value,) = row.values()
        if isinstance(value, dict) and "id" in value:
            return value
    short = {key.split(".", 1)[-1]: value for key, value in row.items()}
    return short if len(short) == len(row) else row


def print_rows(items: list[Any], as_json: bool, columns: list[str] | None = None) -> None:
    rows = as_rows(items)
    if as_json:  # strict JSON: a NaN or infinity a query computes is null
        print(json.dumps(_finite(rows), ensure_ascii=False, indent=None, default=str, allow_nan=False))
        return
    if not rows:
        print("(no rows)")
        return
    columns = columns or list(rows[0])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [min(60, max(len(c), *(len(row[i]) for row in cells))) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        print("  ".join(v[:w].ljust(w) for v, w in zip(row, widths)).rstrip())


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
