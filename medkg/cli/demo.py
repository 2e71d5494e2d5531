"""`medkg demo`: the main job end to end (graph, extraction, embedding, alignment, evaluation, report)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> None:
    from kg.paths import default_data_dir

    from ..demo import DemoSettings, run_demo

    settings = DemoSettings(data_dir=args.data_dir or default_data_dir(), out=args.out, graph=args.graph,
                            budget_minutes=args.budget_minutes, quick=args.quick, device=args.device, workers=args.workers)
    run_demo(settings, args.start_from)


def register(commands: argparse._SubParsersAction) -> None:
    from ..demo import STAGE_NAMES

    p = commands.add_parser(
        "demo", help="run the main job end to end and write a report page",
        description="Build the open radiology graph and load it, extract and link the IU X-ray reports' findings, train "
                    "the knowledge encoder and concept embeddings, train the knowledge-guided aligner and the CLIP "
                    "baseline, evaluate both on held-out patients, draw entity attention, and write OUT/index.html. "
                    "Each stage is skipped when its inputs have not changed; --from reruns from a stage.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="the shared data (default: $MEDKG_DATA_DIR, else shared/data beside the project)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="where every stage writes")
    p.add_argument("--graph", metavar="URI", help="graph database (default: $MEDKG_GRAPH, else the embedded graph in $MEDKG_HOME)")
    p.add_argument("--budget-minutes", type=float, default=15.0, help="training time for both aligners together")
    p.add_argument("--from", dest="start_from", choices=STAGE_NAMES, help="rerun from this stage on")
    p.add_argument("--quick", action="store_true", help="a smoke run: every stage, tiny settings (about 3 minutes)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--workers", type=int, default=2, help="extraction processes")
    p.set_defaults(func=cmd_demo)
