"""`medkg extract ...`: link radiology reports to graph concepts, with assertions and labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from extract.labels import label_set_names
from kg.problems import ProblemLog

from ..api import extract as extract_api
from .common import graph_opt, problems_footer, run_opt


def cmd_index(args: argparse.Namespace) -> None:
    concept_index, built = extract_api.index(args.dir, rebuild=args.rebuild, progress=not args.quiet)
    state = "built" if built else "up to date"
    print(f"concept index {state}: {len(concept_index.terms):,} terms of {len(concept_index.concepts):,} concepts in {concept_index.directory}")


def cmd_run(args: argparse.Namespace) -> None:
    problems = ProblemLog(strict=args.strict)
    print(extract_api.run(args.input, args.kg, args.out, args.workers, args.link, args.graph, problems, not args.quiet))
    problems_footer(problems)


def cmd_labels(args: argparse.Namespace) -> None:
    problems = ProblemLog(strict=args.strict)
    count = extract_api.labels(args.input, args.kg, args.label_set, args.out, args.workers, problems, not args.quiet)
    print(f"wrote {args.out}: {count:,} reports labelled with {args.label_set}")
    problems_footer(problems)


def cmd_assertions(args: argparse.Namespace) -> None:
    problems = ProblemLog(strict=args.strict)
    count = extract_api.assertions(args.input, args.out, problems)
    print(f"wrote {args.out}: {count:,} assertions")
    problems_footer(problems)


def register(commands: argparse._SubParsersAction) -> None:
    extract = commands.add_parser("extract", help="link reports to concepts, with negation and uncertainty").add_subparsers(dest="command", required=True)
    inputs = argparse.ArgumentParser(add_help=False)
    inputs.add_argument("input", type=Path, help="IU X-ray archive or XML folder, a CSV with id,text columns, or a folder of .txt reports")
    inputs.add_argument("--kg", type=Path, required=True, metavar="DIR", help="RRF directory written by `medkg kg build`")
    inputs.add_argument("--workers", type=int, default=1, help="processes working on reports in parallel")

    p = extract.add_parser("index", parents=[run_opt], help="build the concept index of an RRF directory (cached)")
    p.add_argument("dir", type=Path)
    p.add_argument("--rebuild", action="store_true", help="rebuild even when the RRF files have not changed")
    p.set_defaults(func=cmd_index)

    p = extract.add_parser("run", parents=[inputs, graph_opt, run_opt], help="mentions of every report, as JSON Lines")
    p.add_argument("--out", type=Path, required=True, help="output .jsonl file")
    p.add_argument("--link", action="store_true", help="also write (:Report)-[:MENTIONS]->(:Concept) into the graph database")
    p.set_defaults(func=cmd_run)

    p = extract.add_parser("labels", parents=[inputs, run_opt], help="one CSV row of labels per report")
    p.add_argument("--label-set", choices=label_set_names(), required=True)
    p.add_argument("--out", type=Path, required=True, help="output .csv file")
    p.set_defaults(func=cmd_labels)

    p = extract.add_parser("assertions", parents=[run_opt], help="assertion of a target phrase in a sentence, for scoring corpora")
    p.add_argument("input", type=Path, help="TSV with a header and rows id<TAB>target<TAB>sentence")
    p.add_argument("--out", type=Path, required=True, help="output TSV: id<TAB>assertion")
    p.set_defaults(func=cmd_assertions)
