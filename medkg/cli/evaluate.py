"""`medkg evaluate`: a trained run judged on a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from kg.problems import ProblemLog

from .common import problems_footer


def cmd_evaluate(args: argparse.Namespace) -> None:
    from ..api import evaluate

    problems = ProblemLog(strict=args.strict)
    metrics = evaluate.evaluate(args.checkpoint, args.dataset, args.root, args.out, data_dir=args.data_dir,
                                device=args.device or None, probe=args.probe, split=args.split,
                                resamples=args.bootstrap, seed=args.seed, progress=not args.quiet, problems=problems)
    print(evaluate.summary(metrics, args.out))
    problems_footer(problems)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate", help="zero-shot AUC, localisation, retrieval and a linear probe of a trained run",
        description="Evaluate a training run on a dataset: zero-shot AUC per label with bootstrap 95% intervals "
                    "(prompts from the knowledge graph; the entity decoder's score when the model has one), the "
                    "pointing game on NIH's boxes beside random, centre and prior baselines, image-report retrieval, "
                    "and with --probe a linear probe on 1%, 10% and 100% of the training labels. Writes "
                    "metrics.json, zero_shot_scores.csv, attention_peaks.csv and prompts.json into --out.")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="RUN", help="a training run directory (model/, config.yaml)")
    p.add_argument("--dataset", required=True, help="the layout of --root: nih-cxr14, chexpert, iu-xray, mimic-cxr or csv")
    p.add_argument("--root", type=Path, required=True, metavar="DIR", help="the dataset folder (csv: the manifest file)")
    p.add_argument("--out", type=Path, required=True, metavar="OUTDIR", help="where the metrics and tables go")
    p.add_argument("--device", default="", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--probe", action="store_true", help="also train linear probes on frozen image features")
    p.add_argument("--split", choices=("test", "valid", "train", "all"),
                   help="patients to evaluate: default test on the run's own corpus, all on another dataset; train is "
                        "for diagnostics (the model trained on those images, though no loss saw their boxes)")
    p.add_argument("--data-dir", type=Path, help="where the run config's paths point (default: $MEDKG_DATA_DIR, else shared/data beside the project)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples of the AUC intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the probe's subsets (default 0)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image or row")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)
