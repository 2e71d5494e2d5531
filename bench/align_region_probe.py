"""Do a trained run's image regions hold where a finding is? A multiple-instance probe on frozen region features.

Why: the pointing game of an entity decoder cannot beat what its regions hold. Here each boxed finding gets a
linear scorer over the run's frozen projected regions (`AlignmentModel.encode_image(...).local`, standardised),
pooled over the regions by log-sum-exp, s = (1/τ)·log mean_r exp(τ·w·x_r) + b, and fitted with binary
cross-entropy on the image labels of the run's training patients (Adam, L2; no box is ever fitted). Its map is the
per-region score w·x_r; the pointing game of that map (`alignment.localization`) is printed for the training
patients (the probe's own images: an upper bound) and the valid ones, beside the random point and the image centre
on the same cases, with the ratio to the random point. The test patients are not read.

A probe near the random point, even on the images it was fitted on, says the regions hold no finding-specific place:
no decoder trained on them can point better (docs/BENCHMARKS.md, "Why the entity maps do not localise").

Run from the repository root after bench/align_zero_shot.py (about 20 s per run on 2 CPU cores):

    .venv/bin/python bench/align_region_probe.py --runs runs/bench/medkg-seed0 [more runs] [--tau 1 5]
"""

from __future__ import annotations

from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import argparse  # noqa: E402
import math  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from alignment import localization  # noqa: E402
from alignment.data.corpora import read_corpus, read_nih_boxes  # noqa: E402
from alignment.data.images import ImageCache  # noqa: E402
from alignment.data.split import side_of  # noqa: E402
from alignment.evaluate import run_config  # noqa: E402
from alignment.model import AlignmentModel  # noqa: E402
from alignment.states import PRESENT  # noqa: E402
from alignment.train import MODEL_DIR  # noqa: E402
from encoders.transforms import ImageTransform  # noqa: E402
from graphdb.uri import medkg_home  # noqa: E402
from kg.paths import default_data_dir  # noqa: E402
from kg.problems import ProblemLog  # noqa: E402

SIDES = ("train", "valid")


@torch.no_grad()
def regions(model: AlignmentModel, transform: ImageTransform, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """[n, N, E] frozen projected regions of the uint8 images, and the grid."""
    out, grid = [], (0, 0)
    for start in range(0, len(pixels), 64):
        encoded = model.encode_image(transform(pixels[start:start + 64].float() / 255, train=False))
        out.append(encoded.local.float())
        grid = encoded.grid
    return torch.cat(out), grid


def fit(features: torch.Tensor, labels: torch.Tensor, tau: float, steps: int = 300, seed: int = 0) -> torch.Tensor:
    """[L, E] scorers, one per label column of `labels` [n, L], by log-sum-exp pooling over the regions [n, N, E]."""
    torch.manual_seed(seed)
    weights = torch.zeros(labels.shape[1], features.shape[-1], requires_grad=True)
    bias = torch.zeros(labels.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([weights, bias], lr=1e-2)
    for _ in range(steps):
        scores = torch.einsum("bnd,kd->bkn", features, weights)
        pooled = (torch.logsumexp(tau * scores, -1) - math.log(scores.shape[-1])) / tau + bias
        loss = F.binary_cross_entropy_with_logits(pooled, labels) + 1e-3 * weights.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return weights.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--tau", nargs="+", type=float, default=[1.0, 5.0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    args = parser.parse_args()
    torch.set_num_threads(2)
    problems = ProblemLog()
    root = args.data_dir / "nih-cxr14-bbox"
    corpus = read_corpus("nih-cxr14", root, problems)
    boxes = read_nih_boxes(root, problems)
    findings = sorted({box.label for found in boxes.values() for box in found})
    sizes: dict[str, tuple[int, int]] = {}
    for image in corpus.images:
        with Image.open(image.path) as opened:
            sizes[image.name] = opened.size
    print("| run | τ | side | cases | probe | random | centre | probe / random |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        config = run_config(run)
        model = AlignmentModel.from_pretrained(run / MODEL_DIR).eval()
        pixels, images = ImageCache().load(corpus.images, config.transform.image_size, problems,
                                           medkg_home() / "alignment" / "images", False)
        sides = [side_of(image.patient, tuple(config.data.split), config.data.split_seed) for image in images]
        rows = [i for i, side in enumerate(sides) if side in SIDES]
        features, grid = regions(model, ImageTransform(config.transform), pixels[rows])
        train = torch.tensor([sides[r] == "train" for r in rows])
        mean, std = features[train].mean((0, 1)), features[train].std((0, 1)) + 1e-6
        features = (features - mean) / std
        labels = torch.tensor([[float(images[r].labels.get(f) == PRESENT) for f in findings] for r in rows])
        for tau in args.tau:
            scores = torch.einsum("bnd,kd->bkn", features, fit(features[train], labels[train], tau))
            for side in SIDES:
                cases = [(i, f) for i, r in enumerate(rows) if sides[r] == side
                         for f in dict.fromkeys(b.label for b in boxes.get(images[r].name, []))]
                peaks = [localization.Peak(images[rows[i]].name, f, *localization.attention_peak(
                    scores[i, findings.index(f)], grid, sizes[images[rows[i]].name])) for i, f in cases]
                named = [(images[rows[i]].name, f) for i, f in cases]
                bars = localization.baselines(named, boxes, sizes, {})
                probe = localization.mean(localization.pointing_game(peaks, boxes))
                random, centre = localization.mean(bars["random"]), localization.mean(bars["centre"])
                print(f"| {run} | {tau:g} | {side} | {len(cases)} | {probe:.3f} | {random:.3f} | {centre:.3f} | "
                      f"{probe / random:.2f} |")


if __name__ == "__main__":
    main()
