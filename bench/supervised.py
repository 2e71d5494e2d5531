"""Supervised reference for the aligners: a classifier trained from scratch on the NIH training images.

Why: the aligners (the CLIP baseline and medkg's knowledge-guided model) are judged by their zero-shot mean AUC on
the held-out patients of the shared NIH ChestX-ray14 subset. A classifier trained on the same training images with
the same image encoder, augmentation and budget, but from the labels directly, says what that encoder can learn
from those few hundred images: the reference point a zero-shot AUC is read against. In one run this bench

- reads `nih-cxr14-bbox` (`alignment.data.corpora.read_nih_cxr14`, 14 findings, all known: a finding not listed is
  absent) and splits it by patient 70/10/20 with split seed 0 (`alignment.data.split.patient_split`), the split
  the aligners use, whatever the training seeds;
- decodes the images once (`ImageCache`, kept in `--cache-dir`) at the encoder's size;
- per training seed: builds the image encoder from scratch (`ImageEncoder.from_config`, default: the aligners'
  CPU encoder, a ResNet of basic blocks, widths 32/64/128/256, one block per stage, 224 px, grayscale) and a
  linear head from its global feature to the 14 findings; trains it with BCE-with-logits on the 14 labels,
  AdamW (lr 1e-3, weight decay 1e-4 except on biases and norms), linear warm-up over the first 10% of the steps
  then cosine decay (the aligners' schedule), gradient norm clipped at 1, batches of 32 drawn as the aligners
  draw them (`alignment.batches.generator(seed, epoch, 0)`, incomplete last batch dropped), the training
  augmentation of `encoders.transforms.ImageTransform`; for a fixed number of epochs;
- prints the valid mean AUC after every epoch, for information only: no epoch, seed or setting is selected on
  valid or test; the model tested is the last epoch's;
- prints the test AUC per finding (`alignment.zeroshot.label_aucs`: findings with no positive test image are
  left out, as they are for the aligners) and the mean over findings, per seed, then the mean and sample
  standard deviation over seeds, and the wall time of each seed (training and evaluation).

Run from the repository root:

    .venv/bin/python bench/supervised.py [--epochs 20] [--seeds 0 1 2] [--threads 2] [--data-dir ../shared/data]
                                         [--cache-dir ~/.cache/medkg/bench] [--json OUT]

At the defaults a seed takes about 90 s on 2 otherwise idle CPU cores (about 4.5 s an epoch, validation
included; 260 steps of batch 32), so the 3 seeds about 5 minutes; other load on the cores stretches this a lot
(4 to 8 minutes a seed at a load average of 3 to 5). The images are decoded once (a few seconds) and then read
from the cache. Timings depend on the machine and on other load. The run exits 0 unless it fails (2 when
`alignment.zeroshot` does not import); there is no goal, only the reference figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from transformers import get_cosine_schedule_with_warmup  # noqa: E402

from alignment.batches import batches_per_epoch, generator  # noqa: E402
from alignment.data.corpora import read_nih_cxr14  # noqa: E402
from alignment.data.images import ImageCache  # noqa: E402
from alignment.data.split import SIDES, assert_disjoint, patient_split  # noqa: E402
from alignment.states import ABSENT, PRESENT, UNKNOWN  # noqa: E402
from encoders.device import resolve_device  # noqa: E402
from encoders.image import ImageEncoder, ImageEncoderConfig  # noqa: E402
from encoders.transforms import ImageTransform, ImageTransformConfig  # noqa: E402
from kg.paths import default_data_dir  # noqa: E402
from kg.problems import ProblemLog  # noqa: E402

SPLIT = (0.7, 0.1, 0.2)
SPLIT_SEED = 0  # the aligners' split: fixed across training seeds
WARMUP = 0.1  # share of the steps with linear warm-up (the aligners' `train.warmup`)
MAX_GRAD_NORM = 1.0  # the aligners' `train.max_grad_norm`
EVAL_BATCH = 64

LabelAucs = Callable[[Tensor, Tensor, list[str]], dict[str, float]]


class Classifier(nn.Module):
    """The image encoder's global feature, then one linear layer to a logit per finding."""

    def __init__(self, encoder: ImageEncoder, labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, labels)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.head(self.encoder(pixels).global_)


def zeroshot_metrics() -> tuple[LabelAucs, Callable[[dict[str, float]], float]]:
    """`alignment.zeroshot`'s AUC per label and mean, imported here rather than at the top: the module imports the
    alignment model, which is not needed for this bench."""
    from alignment.zeroshot import label_aucs, mean

    return label_aucs, mean


def states_of(records: list[Any], labels: list[str]) -> Tensor:
    """[N, L] int64 states (UNKNOWN where a record does not give a label)."""
    return torch.tensor([[r.labels.get(label, UNKNOWN) for label in labels] for r in records], dtype=torch.long)


def parameter_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norm parameters (the aligners' rule)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": other, "lr": lr, "weight_decay": 0.0}]


@torch.no_grad()
def predict(model: Classifier, images: Tensor, transform: ImageTransform, device: torch.device) -> Tensor:
    """Probabilities [N, L] of uint8 images [N, C, S, S], without augmentation."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), EVAL_BATCH):
        pixels = transform(images[start:start + EVAL_BATCH].to(device).float() / 255, train=False)
        out.append(model(pixels).float().sigmoid().cpu())
    model.train(was_training)
    return torch.cat(out)


def train_seed(seed: int, args: argparse.Namespace, data: dict[str, tuple[Tensor, Tensor]], labels: list[str],
               encoder_config: ImageEncoderConfig, transform_config: ImageTransformConfig, device: torch.device,
               label_aucs: LabelAucs, mean: Callable[[dict[str, float]], float]) -> dict[str, Any]:
    started = time.perf_counter()
    torch.manual_seed(seed)  # the weights and kornia's augmentation draws
    model = Classifier(ImageEncoder.from_config(encoder_config, device=device), len(labels)).to(device)
    transform = ImageTransform(transform_config).to(device)
    train_images, train_states = data["train"]
    steps_per_epoch = batches_per_epoch(len(train_images), args.batch_size)
    total = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(parameter_groups(model, args.lr, args.weight_decay))
    schedule = get_cosine_schedule_with_warmup(optimizer, round(args.warmup * total), total)
    targets = (train_states == PRESENT).float()
    known = (train_states == PRESENT) | (train_states == ABSENT)
    history: list[dict[str, float]] = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=generator(seed, epoch, 0))
        losses = []
        for start in range(0, steps_per_epoch * args.batch_size, args.batch_size):
            rows = order[start:start + args.batch_size]
            pixels = transform(train_images[rows].to(device).float() / 255, train=True)
            logits = model(pixels)
            mask = known[rows].to(device)
            loss = nn.functional.binary_cross_entropy_with_logits(logits[mask], targets[rows].to(device)[mask])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        valid_images, valid_states = data["valid"]
        valid = mean(label_aucs(predict(model, valid_images, transform, device), valid_states, labels))
        history.append({"epoch": epoch + 1, "train_loss": statistics.fmean(losses), "valid_mean_auc": valid})
        print(f"  seed {seed} epoch {epoch + 1:>3}/{args.epochs}: train loss {history[-1]['train_loss']:.4f}, "
              f"valid mean AUC {valid:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
    test_images, test_states = data["test"]
    test = label_aucs(predict(model, test_images, transform, device), test_states, labels)
    seconds = time.perf_counter() - started
    print(f"seed {seed}: test mean AUC {mean(test):.4f} over {len(test)} findings, {seconds:.1f} s "
          f"({total} steps, {total / seconds:.2f} steps/s)\n", flush=True)
    return {"seed": seed, "test_mean_auc": mean(test), "test_auc": test, "epochs": history, "steps": total,
            "seconds": seconds}


def describe_split(split: dict[str, list[Any]], data: dict[str, tuple[Tensor, Tensor]], labels: list[str]) -> None:
    print("split (by patient, seed 0): " + ", ".join(
        f"{side} {len(data[side][0])} images / {len({r.patient for r in split[side]})} patients" for side in SIDES))
    positives = {side: (data[side][1] == PRESENT).sum(0).tolist() for side in SIDES}
    print(f"{'positives':<20} " + " ".join(f"{side:>6}" for side in SIDES))
    for column, label in enumerate(labels):
        print(f"{label:<20} " + " ".join(f"{positives[side][column]:>6}" for side in SIDES))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (the split stays seed 0)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=WARMUP, help=f"share of steps with linear warm-up (default {WARMUP})")
    parser.add_argument("--architecture", default="resnet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 1, 1, 1])
    parser.add_argument("--no-augment", action="store_true", help="train without the transform's augmentation")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="", help="default: cuda when present, else cpu")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $MEDKG_DATA_DIR or ../shared/data")
    parser.add_argument("--images", default="nih-cxr14-bbox", help="the NIH folder, relative to --data-dir")
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/medkg/bench").expanduser(),
                        help="decoded images are kept here (default ~/.cache/medkg/bench)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    if len(args.seeds) != len(set(args.seeds)):
        parser.error("--seeds: each seed once")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        label_aucs, mean = zeroshot_metrics()
    except Exception as e:  # the alignment package is being edited: say so rather than fail mid-run
        print(f"ERROR: alignment.zeroshot does not import ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    device = resolve_device(args.device or None)
    encoder_config = ImageEncoderConfig(architecture=args.architecture, image_size=args.image_size, channels=1,
                                        hidden_sizes=args.hidden_sizes, depths=args.depths)
    transform_config = ImageTransformConfig(image_size=args.image_size, channels=1, mean=[0.5], std=[0.25],
                                            augment=not args.no_augment)
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"encoder {args.architecture} {args.hidden_sizes} x {args.depths} at {args.image_size} px, "
          f"augment {'off' if args.no_augment else 'on'}; AdamW lr {args.lr:g} wd {args.weight_decay:g}, "
          f"warm-up {args.warmup:.0%} + cosine, batch {args.batch_size}, {args.epochs} epochs, seeds {args.seeds}\n")

    problems = ProblemLog()
    root = (args.data_dir or default_data_dir()) / args.images
    start = time.perf_counter()
    corpus = read_nih_cxr14(root, problems)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    pixels, records = ImageCache().load(corpus.images, args.image_size, problems, cache_dir=args.cache_dir, progress=False)
    load_seconds = time.perf_counter() - start
    labels = list(corpus.label_names)
    row_of = {r.path: i for i, r in enumerate(records)}
    split = patient_split(records, SPLIT, seed=SPLIT_SEED)
    assert_disjoint(split)
    data = {side: (pixels[[row_of[r.path] for r in split[side]]], states_of(split[side], labels)) for side in SIDES}
    print(f"{root}: {len(records)} images of {len({r.patient for r in records})} patients read and decoded in "
          f"{load_seconds:.1f} s (cache {args.cache_dir}); {problems.summary()}")
    describe_split(split, data, labels)

    runs = [train_seed(seed, args, data, labels, encoder_config, transform_config, device, label_aucs, mean)
            for seed in args.seeds]

    means = [run["test_mean_auc"] for run in runs]
    std = statistics.stdev(means) if len(means) > 1 else float("nan")
    tested = [label for label in labels if any(label in run["test_auc"] for run in runs)]
    positives = dict(zip(labels, (data["test"][1] == PRESENT).sum(0).tolist()))
    print(f"test AUC per finding ({len(data['test'][0])} test images; findings without a positive are left out)")
    print(f"{'finding':<20} {'pos':>4} " + " ".join(f"{'seed ' + str(run['seed']):>8}" for run in runs) + f" {'mean':>8}")
    for label in tested:
        values = [run["test_auc"].get(label, float("nan")) for run in runs]
        print(f"{label:<20} {positives[label]:>4} " + " ".join(f"{v:>8.4f}" for v in values)
              + f" {statistics.fmean(values):>8.4f}")
    print(f"{'mean over findings':<25} " + " ".join(f"{m:>8.4f}" for m in means) + f" {statistics.fmean(means):>8.4f}")
    left_out = [label for label in labels if label not in tested]
    if left_out:
        print(f"left out (no positive test image): {', '.join(left_out)}")
    print(f"\ntest mean AUC over {len(runs)} seeds: {statistics.fmean(means):.4f} ± {std:.4f} (sample std)")
    print("wall time per seed: " + ", ".join(f"seed {run['seed']} {run['seconds']:.1f} s" for run in runs)
          + f"; images {load_seconds:.1f} s")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if args.json is not None:
        figures = {
            "command": " ".join(sys.argv),
            "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                         "split": list(SPLIT), "split_seed": SPLIT_SEED, "max_grad_norm": MAX_GRAD_NORM,
                         "device": str(device), "torch": torch.__version__},
            "data": {side: {"images": len(data[side][0]), "patients": len({r.patient for r in split[side]}),
                            "positives": dict(zip(labels, (data[side][1] == PRESENT).sum(0).tolist()))} for side in SIDES},
            "image_seconds": load_seconds,
            "runs": runs,
            "test_mean_auc": {"mean": statistics.fmean(means), "std": std, "seeds": means},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
