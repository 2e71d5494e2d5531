"""`medkg train`: train a knowledge-guided image encoder against reports."""

from __future__ import annotations

import argparse
from pathlib import Path

from kg.problems import ProblemLog

from .common import problems_footer


def cmd_train(args: argparse.Namespace) -> None:
    from ..api import align

    problems = ProblemLog(strict=args.strict)
    print(align.train(args.config, args.out, args.data_dir, args.set, progress=not args.quiet, problems=problems,
                      resume=args.resume))
    problems_footer(problems)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train an image encoder against reports, guided by the knowledge graph",
                            description="Train (or resume: run the same command again) an aligner from a config. "
                                        "Shipped configs: clip, medclip, gloria, mgca, kad, medkg, medkg-gpu.")
    p.add_argument("--config", required=True, help="a YAML config, or the name of a shipped one (e.g. medkg)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoint, metrics, model)")
    p.add_argument("--data-dir", type=Path, help="where the config's relative paths point (default: $MEDKG_DATA_DIR, else shared/data beside the project)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=2 --set loss.clip=0.5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (the default when it has a checkpoint)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image or report")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)
