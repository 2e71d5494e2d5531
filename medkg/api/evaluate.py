"""`medkg evaluate` as Python: a trained run judged on a dataset (zero-shot AUC with bootstrap intervals,
localisation by the pointing game, retrieval, optionally a linear probe), written to an output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphdb.uri import medkg_home
from kg.errors import MissingInputError
from kg.paths import default_data_dir
from kg.problems import ProblemLog

SHARED_PEAKS_WARNING = 0.5  # from this share of finding pairs with one peak on, the summary says so


def evaluate(checkpoint: Path, dataset: str, root: Path, out: Path, *, data_dir: Path | None = None,
             device: str | None = None, probe: bool = False, split: str | None = None, resamples: int = 1000,
             seed: int = 0, progress: bool = True, problems: ProblemLog | None = None) -> dict[str, Any]:
    """Evaluate the training run `checkpoint` (a run directory: its `model/` and `config.yaml`) on `dataset` at `root`
    and write `metrics.json`, `zero_shot_scores.csv`, `attention_peaks.csv` and `prompts.json` into `out`; returns
    the metrics. `split`: test (default on the run's own image corpus), valid, or all (default on another dataset).
    `data_dir`: where the run config's relative paths point (default $MEDKG_DATA_DIR, else ../shared/data); the
    graph, mentions and image caches are shared with training under $MEDKG_HOME/alignment."""
    from alignment.evaluate import evaluate as evaluate_run

    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if not data_dir.is_dir():
        raise MissingInputError(f"data directory not found: {data_dir} (give --data-dir or set MEDKG_DATA_DIR)")
    return evaluate_run(Path(checkpoint), dataset, Path(root), Path(out), data_dir, medkg_home() / "alignment",
                        device=device, linear_probe=probe, split=split, resamples=resamples, seed=seed,
                        progress=progress, problems=problems)


def summary(metrics: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal: the headline figures and where the files are."""
    details = metrics.get("details", {})
    lines = [f"{details.get('dataset')} ({details.get('split')}, {details.get('images')} images), score: {details.get('score')}"]
    for key in ("zero_shot", "zero_shot_prompt"):
        block = metrics.get(key)
        if block and block.get("auc"):
            low, high = details.get(key, {}).get("mean_auc_ci", [None, None])
            ci = f" (95% CI {low:.3f}-{high:.3f})" if low is not None and high is not None else ""
            lines.append(f"{key}: mean AUC {block['mean_auc']:.3f}{ci} over {len(block['auc'])} labels")
    loc = metrics.get("localization")
    if loc:
        lines.append(f"pointing game: {loc['mean_pointing_game']:.3f} (random {loc['random_baseline']:.3f}, "
                     f"centre {loc['centre_baseline']:.3f}, prior {loc['prior_baseline']:.3f})")
        shared = loc.get("shared_peaks")
        if shared is not None:
            lines.append(f"maps of two findings on one image peak at the same region: {shared:.0%} of pairs"
                         + (" (the maps do not tell the findings apart)" if shared >= SHARED_PEAKS_WARNING else ""))
    ret = metrics.get("retrieval")
    if ret and ret.get("mode") == "decoupled":
        figures = ", ".join(f"{k} {v:.3f}" for k, v in ret["precision"].items())
        lines.append(f"retrieval (image→report, {ret['reports']} reports): {figures} (chance {ret['chance']:.3f})")
    elif ret:
        lines.append("retrieval: image→report " + ", ".join(f"{k} {v:.3f}" for k, v in ret["image_to_report"].items())
                     + "; report→image " + ", ".join(f"{k} {v:.3f}" for k, v in ret["report_to_image"].items()))
    for fraction, block in (metrics.get("probe") or {}).items():
        lines.append(f"linear probe {fraction} ({block['train_images']} images): mean AUC {block['mean_auc']:.3f}")
    for note in details.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"written to {out}")
    return "\n".join(lines)
