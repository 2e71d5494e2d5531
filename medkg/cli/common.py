"""Options and helpers every command group shares."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from kg.errors import InputError
from kg.problems import ProblemLog

graph_opt = argparse.ArgumentParser(add_help=False)
graph_opt.add_argument("--graph", metavar="URI", help="embedded://PATH or a Neo4j URI (default: $MEDKG_GRAPH, else the embedded graph in $MEDKG_HOME)")
json_opt = argparse.ArgumentParser(add_help=False)
json_opt.add_argument("--json", action="store_true", help="print a JSON list of objects")
run_opt = argparse.ArgumentParser(add_help=False)
run_opt.add_argument("--strict", action="store_true", help="stop at the first malformed input line")
run_opt.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


INT64 = range(-(2**63), 2**63)  # the integers both databases store


def params(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; v is read as JSON when it parses (numbers, lists), else as a string. Integers beyond
    64 bits and NaN or infinities are refused: no database stores them, and NaN is no JSON."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--param expects key=value, got {pair!r}")
        try:
            result[key] = json.loads(value, parse_constant=lambda name: _refuse(key, f"{name} is not a number a query can use"))
        except json.JSONDecodeError:
            result[key] = value
        _check_numbers(key, result[key])
    return result


def _check_numbers(key: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and value not in INT64:
        _refuse(key, f"{value} does not fit in a 64-bit integer")
    if isinstance(value, float) and not math.isfinite(value):  # 1e999 reads as infinity
        _refuse(key, f"{value} is not a finite number")
    for item in value if isinstance(value, list) else value.values() if isinstance(value, dict) else ():
        _check_numbers(key, item)


def _refuse(key: str, reason: str) -> Any:
    raise InputError(f"--param {key}: {reason}")


PROBLEMS_FILE = "problems.txt"


def problems_footer(problems: ProblemLog, save_to: Path | None = None) -> None:
    """The count of skipped input; with `save_to`, every problem is written there (the log shows the first ones)."""
    if not problems:
        return
    where = "first ones above"
    if save_to is not None and save_to.parent.is_dir():
        problems.write(save_to)
        where = f"all {len(problems)} in {save_to}"
    print(f"skipped input: {problems.summary()} ({where}; --strict stops at the first)", file=sys.stderr)
