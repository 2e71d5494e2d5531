"""`medkg explain`: what a trained run sees in images, entity by entity and word by word."""

from __future__ import annotations

import argparse
from pathlib import Path

from kg.errors import InputError


def cmd_explain(args: argparse.Namespace) -> None:
    from ..api import explain

    entities = [e.strip() for e in args.entities.split(",") if e.strip()] if args.entities is not None else None
    if entities is not None and not entities:
        raise InputError("--entities: give at least one entity name, synonym or concept id")
    print(explain.explain(args.images, args.checkpoint, args.out, entities=entities, top=args.top, report=args.report,
                          device=args.device or None, temperature=args.word_temperature, data_dir=args.data_dir,
                          resize=args.resize))


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "explain", help="entity scores and attention maps of images under a trained run, with a viewer page",
        description="For each image and entity: P(present), the prediction (absent / present / uncertain) and the "
                    "entity decoder's attention over the image, as PNG overlays and .npy maps (float32 [H, W] in the "
                    "file's pixels, max-normalised); with --report, each word's attention over the image regions. "
                    "DIR/index.html browses them, offline.")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG, JPEG or DICOM files")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="RUN",
                   help="a training run directory (its model/ and config.yaml), its model/ or its checkpoint.pt")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--entities", metavar="NAMES",
                       help='comma-separated entity names, synonyms or concept ids, e.g. "pleural effusion,cardiomegaly"')
    which.add_argument("--top", type=int, metavar="K", help="the K entities of highest P(present) in each image (default 5)")
    p.add_argument("--report", metavar="TEXT_OR_FILE", help="a report (its text, or a file holding it): word–region maps")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where maps, overlays and index.html go")
    p.add_argument("--resize", choices=("stretch", "crop"), default="stretch",
                   help="how a file becomes the model's square input: stretch (default: resized whole, as training and "
                        "evaluation read images) or crop (shorter side resized, centre crop; the margins get no attention)")
    p.add_argument("--word-temperature", type=float, metavar="T",
                   help="softmax temperature of word–region attention (default: 1/γ1 of a GLoRIA-trained run, else 0.1)")
    p.add_argument("--device", default="", help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--data-dir", type=Path, help="the run's data directory, for its graph's names (default: $MEDKG_DATA_DIR)")
    p.set_defaults(func=cmd_explain)
