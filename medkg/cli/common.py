"""Options and helpers every command group shares."""

from __future__ import annotations

import argparse
import json
import sys
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


def params(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; v is read as JSON when it parses (numbers, lists), else as a string."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--param expects key=value, got {pair!r}")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def problems_footer(problems: ProblemLog) -> None:
    if problems:
        print(f"skipped input: {problems.summary()} (first ones above; --strict stops at the first)", file=sys.stderr)
