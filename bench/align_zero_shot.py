"""Zero-shot AUC of the aligners on held-out NIH patients, over seeds: medkg's knowledge-guided config
against the plain CLIP baseline, same data, encoder and budget.

Why: the alignment issue is done when the knowledge-guided model beats CLIP on patients it never saw,
with the spread over seeds. Each config trains on the shared data (NIH ChestX-ray14 images with labels,
IU X-ray reports without images, decoupled) with the split seed fixed, so every seed is tested on the
same held-out patients; nothing is selected on them (fixed epochs, no early stopping). Two scores per
model (alignment.zeroshot): `prompt`, the CLIP way (positive against negated prompt), and `entity`, the
entity decoder's P(present) for models that have one (learned from training-split image labels, so it is
zero-shot only in the sense that test patients are unseen). The supervised reference is
`bench/supervised.py` (same images, encoder and epochs).

Run from the repository root (about 10 minutes per run on 2 CPU cores):

    .venv/bin/python bench/align_zero_shot.py [--configs clip medkg] [--seeds 0 1 2] [--out runs/bench]
                                              [--threads 2] [--json OUT] [--set key=value ...]

Runs already trained in --out are evaluated without retraining (delete them to retrain).
"""

from __future__ import annotations

from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from alignment.config import load_config  # noqa: E402
from alignment.evaluate import zero_shot  # noqa: E402
from alignment.train import MODEL_DIR, train  # noqa: E402
from graphdb.uri import medkg_home  # noqa: E402
from kg.paths import default_data_dir  # noqa: E402
from kg.problems import ProblemLog  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["clip", "medkg"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = medkg_home() / "alignment"
    results: dict[str, dict[int, dict]] = {}
    for name in args.configs:
        for seed in args.seeds:
            run = args.out / f"{name}-seed{seed}"
            started = time.perf_counter()
            if not (run / MODEL_DIR).exists():
                config = load_config(Path("configs") / f"{name}.yaml", [f"train.seed={seed}", *args.set])
                train(config, run, args.data_dir, cache, progress=False, problems=ProblemLog())
            seconds = time.perf_counter() - started
            scores = zero_shot(run, args.data_dir, cache)
            scores["train_seconds"] = round(seconds, 1)
            results.setdefault(name, {})[seed] = scores
            line = ", ".join(f"{kind} {scores[kind]['mean_auc']:.3f}" for kind in ("prompt", "entity") if kind in scores)
            print(f"{name} seed {seed}: {line} on {scores['images']} test images ({seconds:.0f} s)", flush=True)
    print("\nmean zero-shot AUC on held-out patients (mean ± sample std over seeds)")
    for name, by_seed in results.items():
        for kind in ("prompt", "entity"):
            values = [s[kind]["mean_auc"] for s in by_seed.values() if kind in s]
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                print(f"  {name:8s} {kind:6s} {statistics.mean(values):.3f} ± {spread:.3f}  ({', '.join(f'{v:.3f}' for v in values)})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
