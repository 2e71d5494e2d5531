"""`medkg`: the command line. Each command parses arguments, calls `medkg.api`, prints."""

from __future__ import annotations

import argparse
import logging
import sys

from graphdb.readonly import ReadOnlyError
from graphdb.store import ConceptNotFoundError, GraphDBError
from kg.problems import MalformedInputError

from . import align, embed, evaluate, explain, extract, kg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medkg", description="Knowledge-graph-enhanced representation learning for medical imaging.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="group", required=True)
    kg.register(commands)
    extract.register(commands)
    embed.register(commands)
    align.register(commands)
    explain.register(commands)
    evaluate.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="medkg: %(message)s")
    try:
        args.func(args)
    except KeyboardInterrupt as error:  # training's own interruption says where its checkpoint is
        print(f"medkg: {error or 'interrupted'}", file=sys.stderr)
        return 130
    except ReadOnlyError as error:
        print(f"medkg: {error}", file=sys.stderr)
        return 3
    except (FileNotFoundError, FileExistsError, ConceptNotFoundError, ValueError, PermissionError, MalformedInputError, GraphDBError) as error:
        print(f"medkg: error: {error}", file=sys.stderr)
        return 2
    return 0
