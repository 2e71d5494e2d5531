"""Inductive check of the text predictor: concepts held out of training entirely, ranked by their text.

Why: a concept added to the graph after training (a new RadLex term) has no learned row in a shallow
model; the text predictor has no per-concept parameters at all, so it should place such a concept
from its name. This script takes a run directory made by `medkg embed train` (its split and text
features), holds out a share of the concepts that occur in test triples (`--share`, default 5%):
every training and validation triple touching them is removed, so they are never seen in training;
trains the text model's preset for `--epochs` on what is left; and prints the filtered test MRR of
the triples that touch a held-out concept (inductive) beside that of the other test triples
(transductive), every known triple filtered.

    .venv/bin/python bench/kge_inductive.py RUN [--share 0.05] [--epochs 4] [--threads 1]
"""

from __future__ import annotations

from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from embed.evaluate import evaluate  # noqa: E402
from embed.presets import preset  # noqa: E402
from embed.run_data import load_run_data  # noqa: E402
from embed.train import train  # noqa: E402
from embed.triples import KnownTriples, Split, Triples  # noqa: E402


def touches(triples: Triples, held: torch.Tensor) -> torch.Tensor:
    return held[triples.heads] | held[triples.tails]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `medkg embed train` run directory with text features")
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    split, features = load_run_data(args.run)
    if features is None:
        raise SystemExit(f"{args.run} has no text features")
    in_test = torch.cat([split.test.heads, split.test.tails]).unique()
    chosen = in_test[torch.randperm(len(in_test), generator=torch.Generator().manual_seed(0))[:int(args.share * len(in_test))]]
    held = torch.zeros(split.train.num_entities, dtype=torch.bool)
    held[chosen] = True

    def keep(part: Triples) -> Triples:
        return part.select((~touches(part, held)).nonzero().squeeze(1))

    reduced = Split(keep(split.train), keep(split.valid), split.test)
    unseen = split.test.select(touches(split.test, held).nonzero().squeeze(1))
    seen = keep(split.test)
    print(f"{len(chosen):,} concepts held out: {len(split.train) - len(reduced.train):,} training triples removed; "
          f"test: {len(unseen):,} triples touch a held-out concept, {len(seen):,} do not")
    config = preset("text", text_features=True, epochs=args.epochs)
    with tempfile.TemporaryDirectory(prefix="medkg-inductive-") as run_dir:
        start = time.perf_counter()
        model = train(config, reduced, run_dir, progress=False, features=features)
        seconds = time.perf_counter() - start
    known = KnownTriples(split.train, split.valid, split.test)
    for name, part in (("inductive (held-out concept)", unseen), ("transductive (others)", seen)):
        m = evaluate(model, part, known)
        print(f"{name:<30} {m['count']:>6} queries  MRR {m['mrr']:.4f}  Hits@1 {m['hits@1']:.4f}  Hits@10 {m['hits@10']:.4f}")
    print(f"(text model, {args.epochs} epochs, {seconds:.0f} s; filtered against train + valid + test of the full graph)")


if __name__ == "__main__":
    main()
