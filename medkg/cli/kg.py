"""`medkg kg ...`: build, load and query knowledge graphs."""

from __future__ import annotations

import argparse
from pathlib import Path

from graphdb.neo4j_admin import import_command
from kg.errors import InputError
from kg.problems import ProblemLog
from kg.umls import UMLSFilter

from ..api import kg as kg_api
from ..output import print_rows
from .common import PROBLEMS_FILE, graph_opt, json_opt, params, problems_footer, run_opt


def cmd_build(args: argparse.Namespace) -> None:
    problems = ProblemLog(strict=args.strict)
    flt = UMLSFilter(
        languages=set(args.lang), sabs=set(args.sab) if args.sab else None,
        semantic_types=set(args.semantic_types) if args.semantic_types else None,
        semantic_groups=set(args.semantic_groups) if args.semantic_groups else None,
    )
    if args.source == "umls" and args.umls_dir is None:
        raise InputError("--umls-dir META is required with --source umls")
    summary = kg_api.build_graph(args.out, args.source, args.data_dir, args.umls_dir, flt, problems, progress=not args.quiet)
    print(summary)
    problems_footer(problems, args.out / PROBLEMS_FILE)


def cmd_load(args: argparse.Namespace) -> None:
    problems = ProblemLog(strict=args.strict)
    summary = kg_api.load_graph(args.dir, args.graph, problems, progress=not args.quiet, data_dir=args.data_dir)
    print(summary)
    problems_footer(problems)


def cmd_lookup(args: argparse.Namespace) -> None:
    print_rows(kg_api.lookup(args.text, args.limit, args.graph), args.json)


def cmd_neighbors(args: argparse.Namespace) -> None:
    found = kg_api.neighbors(args.id, args.depth, args.rel, args.graph, args.limit)
    print_rows(found, args.json, None if args.json else ["distance", "direction", "relation", "id", "name", "group", "via"])


def cmd_similar(args: argparse.Namespace) -> None:
    print_rows(kg_api.similar(args.id, args.limit, args.graph), args.json)


def cmd_path(args: argparse.Namespace) -> None:
    steps = kg_api.path(args.id1, args.id2, args.max_depth, args.graph)
    if not steps and not args.json:
        print(f"no path of at most {args.max_depth} relationships between {args.id1} and {args.id2}")
        return
    print_rows(steps, args.json)


def cmd_query(args: argparse.Namespace) -> None:
    print_rows(kg_api.query(args.cypher, params(args.param), args.write, args.graph, args.allow_files), args.json)


def cmd_info(args: argparse.Namespace) -> None:
    counts = kg_api.counts(args.graph)
    print_rows([{"table": k, "count": v} for k, v in counts.items()], args.json)


def cmd_export(args: argparse.Namespace) -> None:
    counts = kg_api.export(args.dir, args.out, args.format, args.data_dir)
    print(f"wrote {args.out}: {counts['nodes']:,} nodes, {counts['relationships']:,} relationships")
    print(f"import with: cd {args.out} && {import_command()}")


def register(commands: argparse._SubParsersAction) -> None:
    kg = commands.add_parser("kg", help="build, load and query knowledge graphs").add_subparsers(dest="command", required=True)

    p = kg.add_parser("build", parents=[run_opt], help="write a knowledge graph as UMLS RRF files")
    p.add_argument("--source", choices=["open", "umls"], default="open", help="open vocabularies, or a licensed UMLS release")
    p.add_argument("--data-dir", type=Path, help="open data (default: $MEDKG_DATA_DIR, else shared/data beside the project)")
    p.add_argument("--umls-dir", type=Path, metavar="META", help="UMLS META directory with MRCONSO.RRF etc.")
    p.add_argument("--out", type=Path, required=True, help="output directory for the RRF files")
    p.add_argument("--sab", nargs="+", help="UMLS: keep these source vocabularies")
    p.add_argument("--semantic-groups", nargs="+", metavar="GROUP", help="UMLS: keep concepts in these semantic groups (DISO, ANAT, ...)")
    p.add_argument("--semantic-types", nargs="+", metavar="TUI", help="UMLS: keep concepts with these semantic types (T047, ...)")
    p.add_argument("--lang", nargs="+", default=["ENG"], help="UMLS: languages to keep (default ENG)")
    p.set_defaults(func=cmd_build)

    p = kg.add_parser("load", parents=[graph_opt, run_opt], help="load an RRF directory into the graph database")
    p.add_argument("dir", type=Path)
    p.add_argument("--data-dir", type=Path, help="take vocab/umls/SemGroups.txt from here (default: the copy medkg ships)")
    p.set_defaults(func=cmd_load)

    p = kg.add_parser("lookup", parents=[graph_opt, json_opt], help="concepts by name, synonym or id (any case), ranked")
    p.add_argument("text")
    p.add_argument("--limit", type=int, default=10, help="at most this many concepts, at least 1; the ranking does not depend on it")
    p.set_defaults(func=cmd_lookup)

    p = kg.add_parser("neighbors", parents=[graph_opt, json_opt], help="concepts around a concept")
    p.add_argument("id")
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--rel", nargs="+", metavar="R", help="relationship types to follow (IS_A, LOCATED_AT, ...)")
    p.add_argument("--limit", type=int, default=500, help="at most this many concepts, at least 1")
    p.set_defaults(func=cmd_neighbors)

    p = kg.add_parser("similar", parents=[graph_opt, json_opt], help="concepts ranked by embedding similarity (after `medkg embed export --graph`)")
    p.add_argument("id")
    p.add_argument("--limit", type=int, default=10)
    p.set_defaults(func=cmd_similar)

    p = kg.add_parser("path", parents=[graph_opt, json_opt], help="a shortest path between two concepts")
    p.add_argument("id1")
    p.add_argument("id2")
    p.add_argument("--max-depth", type=int, default=6)
    p.set_defaults(func=cmd_path)

    p = kg.add_parser("query", parents=[graph_opt, json_opt], help="run Cypher (read-only unless --write)")
    p.add_argument("cypher")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="query parameter, JSON or string value")
    p.add_argument("--write", action="store_true", help="allow the query to change the graph")
    p.add_argument("--allow-files", action="store_true",
                   help="allow the query to read or write files and URLs (LOAD FROM, LOAD CSV, COPY, ...); refused otherwise")
    p.set_defaults(func=cmd_query)

    p = kg.add_parser("info", parents=[graph_opt, json_opt], help="node and relationship counts")
    p.set_defaults(func=cmd_info)

    p = kg.add_parser("export", help="export an RRF directory for another tool")
    p.add_argument("--format", choices=["neo4j-admin"], default="neo4j-admin")
    p.add_argument("dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data-dir", type=Path, help="take vocab/umls/SemGroups.txt from here (default: the copy medkg ships)")
    p.set_defaults(func=cmd_export)
