"""`medkg`: the command line. Each command parses arguments, calls `medkg.api`, prints."""

from __future__ import annotations

import argparse
import logging
import sys

from tqdm.contrib.logging import logging_redirect_tqdm

from graphdb.readonly import FileAccessError, ReadOnlyError
from graphdb.store import ConceptNotFoundError, GraphNotFoundError, IncompleteGraphError, NoEmbeddingsError
from kg.errors import MedkgError

from . import align, demo, embed, evaluate, explain, extract, kg

# What to do next, in the command line's words: the library's messages name no command or flag.
HINTS: tuple[tuple[type[Exception], str], ...] = (
    (FileAccessError, "pass --allow-files to allow it"),  # before ReadOnlyError, which it is a kind of
    (ReadOnlyError, "pass --write to allow it"),
    (IncompleteGraphError, "run `medkg kg load DIR` again"),
    (GraphNotFoundError, "load one first with `medkg kg load DIR`"),
    (NoEmbeddingsError, "store them with `medkg embed export RUN --graph URI`"),
    (ConceptNotFoundError, "find ids with `medkg kg lookup TEXT`"),
)


def _with_hint(error: Exception) -> str:
    hint = next((hint for kind, hint in HINTS if isinstance(error, kind)), None)
    return f"{error} ({hint})" if hint else str(error)


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
    demo.register(commands)
    _verbose_everywhere(parser)
    return parser


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """`-v` after the command too (`medkg kg load DIR -v`). SUPPRESS: a subcommand that is not given it
    leaves the value the main parser set."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if "--verbose" not in sub._option_string_actions:
                    sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more")
                _verbose_everywhere(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="medkg: %(message)s")
    try:
        with logging_redirect_tqdm():  # warnings print above a progress bar, not through it
            args.func(args)
    except KeyboardInterrupt as error:  # training's own interruption says where its checkpoint is
        print(f"medkg: {str(error) or 'interrupted'}", file=sys.stderr)
        return 130
    except ReadOnlyError as error:
        print(f"medkg: {_with_hint(error)}", file=sys.stderr)
        return 3
    except MedkgError as error:  # what the user can fix; any other exception is a bug and keeps its traceback
        print(f"medkg: error: {_with_hint(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.filename is None:  # raised by code, not by the system about a path: a bug
            raise
        print(f"medkg: error: {error.strerror or error}: {error.filename}", file=sys.stderr)  # a path the user gave
        return 2
    return 0
