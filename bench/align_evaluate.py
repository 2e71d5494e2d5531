"""`medkg evaluate` for every shipped config, side by side: zero-shot AUC with its bootstrap interval, the
pointing game beside the image-blind points and how often two findings' maps share their peak, retrieval
precision and the linear probe, on the held-out NIH patients, with each figure's difference from the CLIP
baseline of the same run.

Why: a user picks a config by these figures; they must come from one evaluation code path, the one users run,
on runs trained the same way (bench/align_zero_shot.py trains them into --runs, seed by seed, same split).

Run from the repository root after bench/align_zero_shot.py (about 1-4 minutes per run on 2 CPU cores):

    .venv/bin/python bench/align_evaluate.py [--configs clip medclip gloria mgca kad medkg] [--seeds 0]
                                             [--runs runs/bench] [--out runs/eval] [--json OUT]

Evaluations already in --out are read back, not recomputed (delete them to recompute).
"""

from __future__ import annotations

from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402

from kg.paths import default_data_dir  # noqa: E402
from medkg.api.evaluate import evaluate  # noqa: E402

CONFIGS = ["clip", "medclip", "gloria", "mgca", "kad", "medkg"]


def figures(metrics: dict) -> dict[str, float]:
    details = metrics.get("details", {})
    low, high = (details.get("zero_shot") or {}).get("mean_auc_ci", [float("nan")] * 2)
    loc = {k: float("nan") if v is None else v for k, v in (metrics.get("localization") or {}).items()}  # null: NaN
    precision = (metrics.get("retrieval") or {}).get("precision", {})
    probe = metrics.get("probe") or {}
    row = {"auc": metrics["zero_shot"]["mean_auc"], "auc_low": low, "auc_high": high,
           "prompt_auc": (metrics.get("zero_shot_prompt") or metrics["zero_shot"])["mean_auc"],
           "pointing": loc.get("mean_pointing_game", float("nan")), "shared peaks": loc.get("shared_peaks", float("nan")),
           "p@1": precision.get("P@1", float("nan"))}
    for fraction in ("1%", "10%", "100%"):
        row[f"probe {fraction}"] = probe.get(fraction, {}).get("mean_auc", float("nan"))
    for kind in ("random", "centre", "prior"):
        row[kind] = loc.get(f"{kind}_baseline", float("nan"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"))
    parser.add_argument("--out", type=Path, default=Path("runs/eval"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data_dir = args.data_dir or default_data_dir()

    results: dict[str, list[dict[str, float]]] = {}
    for name in args.configs:
        for seed in args.seeds:
            run, out = args.runs / f"{name}-seed{seed}", args.out / f"{name}-seed{seed}"
            if not (run / "model").is_dir():
                print(f"{run}: not trained (bench/align_zero_shot.py --configs {name} --seeds {seed}); left out")
                continue
            if (out / "metrics.json").exists():
                metrics = json.loads((out / "metrics.json").read_text())
            else:
                metrics = evaluate(run, "nih-cxr14", data_dir / "nih-cxr14-bbox", out, data_dir=data_dir, probe=True,
                                   progress=False)
            results.setdefault(name, []).append(figures(metrics))

    def mean(name: str, key: str) -> float:
        return statistics.fmean(r[key] for r in results[name])

    columns = ["auc", "prompt_auc", "pointing", "shared peaks", "p@1", "probe 1%", "probe 10%", "probe 100%"]
    base = "clip" if "clip" in results else None
    print("\n| config | seeds | zero-shot mean AUC (95% CI, first seed) | " + " | ".join(columns[1:]) + " |")
    print("|" + " --- |" * (len(columns) + 2))
    for name in results:
        first = results[name][0]
        cells = [f"{mean(name, 'auc'):.3f} ({first['auc_low']:.3f}-{first['auc_high']:.3f})"]
        cells += [f"{mean(name, k):.3f}" + (f" ({mean(name, k) - mean(base, k):+.3f})" if base and name != base else "")
                  for k in columns[1:]]
        print(f"| {name} | {len(results[name])} | " + " | ".join(cells) + " |")
    if results:
        any_row = next(iter(results.values()))[0]
        print(f"\npointing-game baselines (image-blind, same cases): random {any_row['random']:.3f}, "
              f"centre {any_row['centre']:.3f}, prior {any_row['prior']:.3f}; differences in brackets are against {base}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
