"""Evaluation of a trained run: zero-shot classification with knowledge-graph prompts, localisation by the pointing
game, cross-modal retrieval and (optionally) a linear probe, written to an output folder (`evaluate`); and the
simple zero-shot AUC on the run's held-out patients that training and the benchmark use (`zero_shot`).

The run's own `config.yaml` says which data and split it trained on. Evaluated on its own image corpus, a run is
judged on the patients it never saw (`split`: test by default, or valid), assigned by the same rule
(`alignment.data.split.side_of` with the run's `data.split` and `data.split_seed`); on another dataset, on all its
images (or on the side of the same rule that `split` names). Nothing is tuned on the evaluated images.

Zero-shot scores (`alignment.zeroshot`, `alignment.prompts`): each image is scored on its own; no score is
normalised over the evaluation batch (GLoRIA z-scores each class over the batch, so that an image's score there
depends on which images share its batch; here an image scores the same alone or among thousands).
- `prompt`: softmax, at the model's temperature, over the image's cosine similarity to a label's positive and
  negative class vectors (its name, synonyms and IS_A parents from the graph, and their negations);
- `entity`: the entity decoder's P(present) for the label's entity, for models with a decoder. This is the model's
  headline `zero_shot` score when it has one (it learned from training-split image labels, so it is zero-shot for
  the held-out patients, not for the labels); `zero_shot_prompt` always holds the prompt score.
AUC per label (images whose label is present or absent), a percentile bootstrap interval over images
(`zeroshot.bootstrap_aucs`), and the mean over labels.

Output folder: `metrics.json`, `zero_shot_scores.csv` (one row per image, the headline score per label),
`attention_peaks.csv` (image, label, x, y: the peak of each boxed finding's map in the image file's pixels) and
`prompts.json` (the prompts of each label); every file written atomically.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from encoders.transforms import ImageTransform
from kg.atomic import atomic_open
from kg.errors import InputError, MissingInputError
from kg.problems import ProblemLog

from . import localization, probe, retrieval, zeroshot
from .config import AlignConfig, load_config
from .data.corpora import READERS, Box, read_corpus, read_nih_boxes
from .data.images import ImageCache
from .data.records import DatasetError, ImageRecord
from .data.split import side_of
from .dataset import SPLITS, TrainingData, prepare_data
from .knowledge import ensure_assets
from .model import AlignmentModel
from .prompts import LabelPrompts, class_vectors, entity_rows, label_prompts
from .states import ABSENT, PRESENT, UNKNOWN
from .train import CONFIG_FILE, MODEL_DIR

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
SCORES_FILE = "zero_shot_scores.csv"
PEAKS_FILE = "attention_peaks.csv"
PROMPTS_FILE = "prompts.json"
EVAL_SPLITS = (*SPLITS, "all")


def run_config(run: Path) -> AlignConfig:
    """The config a run trained with (a damaged config.yaml is named as such: `load_config`'s `whole`)."""
    path = Path(run) / CONFIG_FILE
    if not path.exists():
        raise MissingInputError(f"{run} is not a training run (no {CONFIG_FILE})")
    return load_config(path, whole=True)


def zero_shot(run: Path, data_dir: Path, cache_dir: Path, split: str = "test", device: str = "cpu",
              progress: bool = False) -> dict[str, Any]:
    """{"prompt": {"auc": {label: x}, "mean_auc": x}, "entity": {...} (models with a decoder), "images": n}: the
    simple zero-shot AUC of the run's own split with bare-name prompts, as training validates."""
    config = run_config(run)
    data = prepare_data(config, Path(data_dir), Path(cache_dir), ProblemLog(), progress)
    model = AlignmentModel.from_pretrained(Path(run) / MODEL_DIR, device=device)
    images, states = data.split_images(split)
    rows = list(range(data.vocabulary.num_labels))
    labels = [str(data.vocabulary.labels[r]) for r in rows]
    scores = zeroshot.image_scores(model, images, ImageTransform(config.transform).to(device), rows)
    result: dict[str, Any] = {"images": len(images)}
    for kind, values in scores.items():
        aucs = zeroshot.label_aucs(values, states[:, rows], labels)
        result[kind] = {"auc": aucs, "mean_auc": zeroshot.mean(aucs)}
    return result


# The evaluation command


@dataclass
class Encoded:
    """What one pass of the image encoder gives for the images at `rows` (row i of each tensor is image rows[i])."""
    rows: list[int]
    global_: Tensor                        # [n, E] unit vectors in the shared space
    backbone: Tensor                       # [n, D] the image encoder's pooled features (the linear probe's input)
    prompt: Tensor                         # [n, L] prompt scores of the labels
    entity: Tensor | None                  # [n, L] the decoder's P(present), models with a decoder
    grid: tuple[int, int]
    maps: dict[int, Tensor] = field(default_factory=dict)    # row -> [L, N] decoder attention (rows asked for)
    regions: dict[int, Tensor] = field(default_factory=dict)  # row -> [N, E] region features (no decoder; rows asked for)


@torch.no_grad()
def encode_images(model: AlignmentModel, pixels: Tensor, transform: ImageTransform, rows: list[int],
                  prompts: list[LabelPrompts], positive: Tensor, negative: Tensor, map_rows: set[int] | None = None,
                  batch_size: int = 64, progress: bool = False) -> Encoded:
    """Encode the uint8 images `pixels[rows]` once, scoring every image on its own (see the module docstring).

    `AlignmentModel.encode_image` per batch, keeping the encoder's own global vectors (`backbone`) beside the
    projected ones. `map_rows`: images whose attention maps (decoder) or region features
    (models without a decoder) are kept, for localisation."""
    model.eval()
    map_rows = map_rows or set()
    entities = [p.entity for p in prompts]
    scale = 1 / model.temperature()
    positive, negative = positive.to(model.device), negative.to(model.device)
    out: dict[str, list[Tensor]] = {"global_": [], "backbone": [], "prompt": [], "entity": []}
    maps: dict[int, Tensor] = {}
    regions: dict[int, Tensor] = {}
    grid = (0, 0)
    for start in tqdm(range(0, len(rows), batch_size), desc="encoding images", unit=" batch", disable=not progress,
                      mininterval=0.5):
        batch = rows[start:start + batch_size]
        images = transform(pixels[batch].to(model.device).float() / 255, train=False)
        encoded = model.encode_image(images)
        global_, local, grid = encoded.global_, encoded.local, encoded.grid
        pair = torch.stack([global_ @ positive.T, global_ @ negative.T], dim=-1) * scale
        out["prompt"].append(pair.float().softmax(-1)[..., 0].cpu())
        out["global_"].append(global_.float().cpu())
        out["backbone"].append(encoded.backbone.float().cpu())
        keep = [i for i, row in enumerate(batch) if row in map_rows]
        if model.decoder is not None:
            logits, attention = model.entities(local, summary=encoded.pooled)
            out["entity"].append(logits[:, entities].float().softmax(-1)[..., PRESENT].cpu())
            for i in keep:
                maps[batch[i]] = attention[i, entities].float().cpu()
        else:
            for i in keep:
                regions[batch[i]] = local[i].float().cpu()
    width = model.config.embed_dim
    empty = torch.zeros(0, len(prompts))
    return Encoded(list(rows), torch.cat(out["global_"]) if out["global_"] else torch.zeros(0, width),
                   torch.cat(out["backbone"]) if out["backbone"] else torch.zeros(0, model.image_encoder.dim),
                   torch.cat(out["prompt"]) if out["prompt"] else empty,
                   (torch.cat(out["entity"]) if out["entity"] else empty) if model.decoder is not None else None,
                   grid, maps, regions)


def label_states(images: list[ImageRecord], labels: list[str]) -> Tensor:
    """int64 [N, L]: each image's state of each label as its dataset gives it, UNKNOWN where it gives none."""
    return torch.tensor([[image.labels.get(label, UNKNOWN) for label in labels] for image in images],
                        dtype=torch.long).reshape(len(images), len(labels))


def evaluate(run: Path, dataset: str, root: Path, out: Path, data_dir: Path, cache_dir: Path, *, device: str | None = None,
             linear_probe: bool = False, split: str | None = None, resamples: int = 1000, seed: int = 0,
             batch_size: int = 64, progress: bool = True, problems: ProblemLog | None = None) -> dict[str, Any]:
    """Evaluate the run in `run` on `dataset` (a layout of `alignment.data.corpora.READERS`) at `root`, write the
    output folder `out` (module docstring) and return the metrics. `data_dir` and `cache_dir` are where the run's
    report corpus, graph and caches are (as in training). `split`: None is the run's test patients on its own
    corpus and every image of another one."""
    run, root, out, data_dir, cache_dir = (Path(p) for p in (run, root, out, data_dir, cache_dir))
    problems = problems if problems is not None else ProblemLog()
    if dataset not in READERS:
        raise DatasetError(f"unknown dataset layout {dataset!r}; known layouts: {', '.join(READERS)}")
    if split is not None and split not in EVAL_SPLITS:
        raise InputError(f"split: one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if resamples < 1:
        raise InputError(f"resamples must be >= 1, got {resamples}")
    device_ = _device(device)
    config = run_config(run)
    model_dir = run / MODEL_DIR
    if not model_dir.is_dir():
        raise MissingInputError(f"{run} holds no trained model: {model_dir} is missing (training writes it when it ends)")
    model = AlignmentModel.from_pretrained(model_dir, device=device_).eval()
    corpus = read_corpus(dataset, root, problems)
    if not corpus.images:
        raise DatasetError(f"{dataset} at {root}: no readable images")
    d = config.data
    own = dataset == d.images and root.resolve() == _path(data_dir, d.image_root).resolve()
    split = split or ("test" if own else "all")
    notes: list[str] = []

    data = prepare_data(config, data_dir, cache_dir, problems, progress)
    assets = ensure_assets(data_dir, cache_dir, progress, kg_dir=_path(data_dir, d.kg) if d.kg else None,
                           mentions=_path(data_dir, d.mentions) if d.mentions else None,
                           reports=_path(data_dir, d.reports) if d.reports else None, problems=problems)
    pixels, images = ImageCache().load(corpus.images, config.transform.image_size, problems, cache_dir / "images", progress)
    fractions = (d.split[0], d.split[1], d.split[2])
    sides = [side_of(image.patient, fractions, d.split_seed) for image in images]
    rows = [i for i, side in enumerate(sides) if split == "all" or side == split]
    if not rows:
        raise InputError(f"{dataset} at {root}: no images of {split} patients (split {list(d.split)}, seed {d.split_seed})")

    found, missing = entity_rows(corpus.label_names, data.vocabulary, model.entity_names)
    if corpus.label_names and not found:
        raise InputError(f"the model in {model_dir} has no entity for any label of {dataset} ({', '.join(missing)}); "
                         f"its entities: {', '.join(model.entity_names)}")
    if missing:
        log.warning("no entity of the model stands for %s: left out of zero-shot and localisation", ", ".join(missing))
        notes.append(f"labels without an entity of the model, left out of zero-shot and localisation: {', '.join(missing)}")
    prompts = label_prompts(found, data.vocabulary, model.entity_names, assets.kg_dir)
    labels = [p.label for p in prompts]
    states = label_states(images, labels)
    width = model.config.embed_dim
    positive, negative = class_vectors(model, prompts) if prompts else (torch.zeros(0, width), torch.zeros(0, width))

    boxes = _boxes(dataset, root, problems, notes)
    cases = [(row, label) for row in rows for label in _boxed_labels(boxes.get(images[row].name, []), set(labels))]
    probe_sides = ("train", split if split in ("valid", "test") else "test")
    probe_rows = [i for i, side in enumerate(sides) if side in probe_sides] if linear_probe else []
    needed = sorted(set(rows) | set(probe_rows))
    transform = ImageTransform(config.transform).to(device_)
    encoded = encode_images(model, pixels, transform, needed, prompts, positive, negative, {row for row, _ in cases},
                            batch_size, progress)
    position = {row: i for i, row in enumerate(encoded.rows)}
    at = [position[row] for row in rows]

    kinds = {"prompt": encoded.prompt[at]}
    if encoded.entity is not None:
        kinds["entity"] = encoded.entity[at]
    headline = "entity" if "entity" in kinds else "prompt"
    details: dict[str, Any] = {
        "run": str(run), "dataset": dataset, "root": str(root), "split": split, "own_corpus": own, "images": len(rows),
        "score": headline, "labels_without_entity": missing,
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "interval": "percentile"},
    }
    metrics: dict[str, Any] = {}
    for kind in (headline, *(k for k in kinds if k != headline)):
        key = "zero_shot" if kind == headline else f"zero_shot_{kind}"
        metrics[key], details[key] = _zero_shot(kinds[kind], states[rows], labels, resamples, seed, progress)
    if not labels:
        notes.append(f"{dataset} at {root} has no image labels: no zero-shot scores")

    peaks: list[localization.Peak] = []
    metrics["localization"] = None
    if boxes and cases:
        metrics["localization"], details["localization"], peaks = _localize(
            model, config, encoded, cases, images, sides, boxes, prompts, progress)
    elif boxes:
        notes.append("no evaluated image has a box of a label the model has an entity for: no localisation")

    metrics["retrieval"] = _retrieval(model, config, corpus, data, images, rows, split, states[rows], found, encoded,
                                      at, cache_dir, batch_size, progress, notes)
    metrics["probe"] = None
    if linear_probe:
        metrics["probe"] = _probe(images, sides, corpus.label_names, encoded, probe_sides, seed, progress, notes)
    details["notes"] = notes
    metrics["details"] = details

    headline_scores = kinds[headline]
    metrics = _finite(metrics)
    _write(out, metrics, [images[r].name for r in rows], labels, headline_scores, peaks, prompts)
    return metrics


def _zero_shot(scores: Tensor, states: Tensor, labels: list[str], resamples: int, seed: int,
               progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    result = zeroshot.bootstrap_aucs(scores.numpy(), states.numpy(), resamples, seed, progress=progress)
    kept = [j for j in range(len(labels)) if not math.isnan(result["auc"][j])]
    aucs = {labels[j]: float(result["auc"][j]) for j in kept}
    summary = {"auc": aucs, "auc_ci": {labels[j]: [float(result["low"][j]), float(result["high"][j])] for j in kept},
               "mean_auc": zeroshot.mean(aucs)}
    positives = {label: int((states[:, j] == PRESENT).sum()) for j, label in enumerate(labels)}
    known = {label: int(((states[:, j] == PRESENT) | (states[:, j] == ABSENT)).sum()) for j, label in enumerate(labels)}
    extra = {"mean_auc_ci": [float(result["mean_low"]), float(result["mean_high"])], "positives": positives,
             "known": known, "one_class": [labels[j] for j in range(len(labels)) if j not in kept]}
    return summary, extra


def _localize(model: AlignmentModel, config: AlignConfig, encoded: Encoded, cases: list[tuple[int, str]],
              images: list[ImageRecord], sides: list[str], boxes: dict[str, list[Box]], prompts: list[LabelPrompts],
              progress: bool) -> tuple[dict[str, Any], dict[str, Any], list[localization.Peak]]:
    column = {p.label: j for j, p in enumerate(prompts)}
    sizes: dict[str, tuple[int, int]] = {}

    def size(row: int) -> tuple[int, int]:
        name = images[row].name
        if name not in sizes:
            with Image.open(images[row].path) as image:
                sizes[name] = image.size
        return sizes[name]

    words: dict[str, tuple[Tensor, Tensor]] = {}
    if model.decoder is None:  # GLoRIA's word–region attention of each label's positive prompts
        with torch.no_grad():
            for p in prompts:
                text = model.encode_text(p.positive)
                words[p.label] = (text.words.float().cpu(), text.word_mask.cpu())
    gamma = config.loss.gloria_gamma[0]
    maps = {}  # row -> [L, N]: every label's map on each boxed image (the pointing game's, and shared_peaks')
    for row in dict.fromkeys(row for row, _ in cases):
        maps[row] = encoded.maps[row] if model.decoder is not None else torch.stack(
            [localization.word_region_attention(*words[p.label], encoded.regions[row], gamma) for p in prompts])
    peaks = []
    for row, label in tqdm(cases, desc="attention peaks", unit=" finding", disable=not progress, mininterval=0.5):
        x, y = localization.attention_peak(maps[row][column[label]], encoded.grid, size(row))
        peaks.append(localization.Peak(images[row].name, label, x, y))
    shared = localization.shared_peaks(maps.values())
    accuracy = localization.pointing_game(peaks, boxes)
    labels = set(column)
    train_boxes = [(box, size(row)) for row, image in enumerate(images) if sides[row] == "train"
                   for box in boxes.get(image.name, []) if box.label in labels]
    priors = localization.prior_points(train_boxes)
    rates = localization.baselines([(images[row].name, label) for row, label in cases], boxes,
                                   {images[row].name: size(row) for row, _ in cases}, priors)
    summary = {"pointing_game": accuracy, "mean_pointing_game": localization.mean(accuracy),
               "random_baseline": localization.mean(rates["random"]), "centre_baseline": localization.mean(rates["centre"]),
               "prior_baseline": localization.mean(rates["prior"]), "shared_peaks": shared}
    counts: dict[str, int] = {}
    for _, label in cases:
        counts[label] = counts.get(label, 0) + 1
    if model.decoder is None:
        method = f"word-region attention of the positive prompts' words (softmax over regions of {gamma:g}·cosine)"
    elif model.decoder.config.region_gamma > 0:
        method = f"each entity's own attention (softmax over regions of {model.decoder.config.region_gamma:g}·cosine with its query)"
    else:
        method = "entity decoder cross-attention (last layer, mean over heads)"
    details = {"method": method, "cases": len(cases), "cases_per_label": dict(sorted(counts.items())), **rates,
               "prior_points": {k: list(v) for k, v in sorted(priors.items())}, "prior_training_boxes": len(train_boxes),
               "grid": list(encoded.grid)}
    return summary, details, peaks


def _retrieval(model: AlignmentModel, config: AlignConfig, corpus: Any, data: TrainingData, images: list[ImageRecord],
               rows: list[int], split: str, states: Tensor, found: dict[str, int], encoded: Encoded, at: list[int],
               cache_dir: Path, batch_size: int, progress: bool, notes: list[str]) -> dict[str, Any] | None:
    """Paired corpora: Recall@K both ways over the evaluated studies with a report. Decoupled: precision@K of the
    run's held-out reports for each evaluated image (`alignment.retrieval`)."""
    vectors = encoded.global_[at]
    if corpus.paired:
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            if corpus.report_of(images[row].study) is not None:
                groups.setdefault(images[row].study, []).append(i)
        if not groups:
            notes.append("no evaluated study has a report: no retrieval")
            return None
        texts = [corpus.report_of(study).text for study in groups]
        image_vectors = retrieval.fuse_views(vectors, list(groups.values()))
        report_vectors = _encode_texts(model, texts, batch_size, progress)
        similarity = image_vectors @ report_vectors.T
        truth = torch.arange(len(groups))
        return {"mode": "paired", "pairs": len(groups), "image_to_report": retrieval.recall_at(similarity, truth),
                "report_to_image": retrieval.recall_at(similarity.T, truth)}
    if not data.reports or not found:
        notes.append("no report corpus, or no labels to judge relevance by: no retrieval")
        return None
    report_split = split if split in ("valid", "test") else "test"
    report_rows = data.report_rows[report_split].tolist()
    if not report_rows:
        notes.append(f"the run's report corpus has no {report_split} reports: no retrieval")
        return None
    if config.model.text.trainable_layers == 0:  # frozen: the features training cached for every report
        data.cache_text(model.text_encoder, cache_dir / "text", progress)
        assert data.text_cache is not None
        with torch.no_grad():
            report_vectors = torch.cat([
                model.encode_text(data.text_cache.batch(report_rows[i:i + batch_size], model.device)).global_.float().cpu()
                for i in range(0, len(report_rows), batch_size)])
    else:
        report_vectors = _encode_texts(model, [data.reports[r].text for r in report_rows], batch_size, progress)
    columns = list(found.values())
    image_present = states == PRESENT
    report_present = data.report_states[report_rows][:, columns] == PRESENT
    relevant = retrieval.relevance(image_present, report_present)
    similarity = vectors @ report_vectors.T
    return {"mode": "decoupled", "images": len(rows), "reports": len(report_rows), "report_split": report_split,
            "precision": retrieval.precision_at(similarity, relevant),
            "chance": float(relevant.float().mean(1).mean()),
            "relevance": "a report stating present at least one of the image's present labels; for a normal image, "
                         "a report stating none"}


@torch.no_grad()
def _encode_texts(model: AlignmentModel, texts: list[str], batch_size: int, progress: bool) -> Tensor:
    parts = [model.encode_text(texts[i:i + batch_size]).global_.float().cpu()
             for i in tqdm(range(0, len(texts), batch_size), desc="encoding reports", unit=" batch", disable=not progress)]
    return torch.cat(parts) if parts else torch.zeros(0, model.config.embed_dim)


def _probe(images: list[ImageRecord], sides: list[str], labels: list[str], encoded: Encoded, probe_sides: tuple[str, str],
           seed: int, progress: bool, notes: list[str]) -> dict[str, Any] | None:
    position = {row: i for i, row in enumerate(encoded.rows)}
    train = [position[r] for r in encoded.rows if sides[r] == probe_sides[0]]
    test = [position[r] for r in encoded.rows if sides[r] == probe_sides[1]]
    if not labels or not train or not test:
        notes.append(f"linear probe skipped: {'no labels' if not labels else 'no training or test images'}")
        return None
    states = label_states([images[r] for r in encoded.rows], labels)
    patients = [images[r].patient for r in encoded.rows]
    return probe.linear_probe(encoded.backbone, states, patients, train, test, labels, seed=seed, progress=progress)


def _boxes(dataset: str, root: Path, problems: ProblemLog, notes: list[str]) -> dict[str, list[Box]]:
    if dataset == "nih-cxr14" and (root / "BBox_List_2017.csv").is_file():
        return read_nih_boxes(root, problems)
    notes.append(f"{dataset} at {root} has no boxes (NIH's BBox_List_2017.csv): no localisation")
    return {}


def _boxed_labels(boxes: list[Box], labels: set[str]) -> list[str]:
    """The findings boxed on one image that are evaluated, each once, in box order."""
    return list(dict.fromkeys(b.label for b in boxes if b.label in labels))


def _write(out: Path, metrics: dict[str, Any], names: list[str], labels: list[str], scores: Tensor,
           peaks: list[localization.Peak], prompts: list[LabelPrompts]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / METRICS_FILE) as f:
        json.dump(metrics, f, indent=1, allow_nan=False)
        f.write("\n")
    with atomic_open(out / SCORES_FILE, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *labels])
        for name, row in zip(names, scores.tolist()):
            writer.writerow([name, *(repr(float(v)) for v in row)])
    with atomic_open(out / PEAKS_FILE, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "label", "x", "y"])
        writer.writerows([peak.image, peak.label, f"{peak.x:g}", f"{peak.y:g}"] for peak in peaks)
    with atomic_open(out / PROMPTS_FILE) as f:
        json.dump({p.label: p.as_dict() for p in prompts}, f, indent=1)
        f.write("\n")


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _device(device: str | None) -> torch.device:
    if device in (None, ""):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise InputError(f"device: cpu or cuda, got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device cuda: CUDA is not available on this machine")
    return torch.device(device)


def _path(data_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_dir / path
