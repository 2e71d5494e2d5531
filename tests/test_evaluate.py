"""`medkg evaluate` on a tiny copy of the real data: a run trained in seconds, evaluated end to end; the written
tables give back the metrics; scores do not depend on the batch; the baselines and peaks follow their definitions;
bad input gives a clean error.

Sizes: 40 real NIH images (28 of training patients, 12 of test patients by the run's split rule) at 64 px with
their real labels and boxes (scaled from 512 px), 30 short reports, a three-stage ResNet of widths 8..32 at 32 px
input (a 4x4 grid of regions), a one-layer entity decoder of width 32, two epochs.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from alignment.config import load_config
from alignment.data.corpora import Box, read_corpus, read_nih_boxes
from alignment.data.images import ImageCache
from alignment.data.split import side_of
from alignment.evaluate import METRICS_FILE, PEAKS_FILE, PROMPTS_FILE, SCORES_FILE, _localize, encode_images, run_config
from alignment.localization import (
    Peak,
    attention_peak,
    baselines,
    covered_share,
    pointing_game,
    prior_points,
    shared_peaks,
)
from alignment.model import CONFIG_NAME, AlignmentModel
from alignment.prompts import LabelPrompts, class_vectors, entity_rows, prompts_for
from alignment.retrieval import precision_at, recall_at, relevance
from alignment.train import train
from alignment.zeroshot import auc, bootstrap_aucs
from encoders.transforms import ImageTransform
from kg.problems import ProblemLog
from medkg.cli import main

IMAGE = 64          # pixels of the tiny NIH copies (the shipped files are 512)
TRAIN, TEST = 28, 12
REPORTS = [
    "Small left pleural effusion.", "No pneumothorax or effusion. Heart size normal.", "Possible right lower lobe pneumonia.",
    "Cardiomegaly. No acute disease.", "Large right pleural effusion with adjacent atelectasis.",
    "Moderate cardiomegaly with pulmonary edema.", "No acute cardiopulmonary disease.", "Left apical pneumothorax.",
    "Bibasilar atelectasis. No pneumonia.", "The lungs are clear. Heart size is normal.",
    "Right upper lobe mass suspicious for malignancy.", "Pulmonary nodule in the left upper lobe.",
    "Hyperinflated lungs consistent with emphysema.", "Interstitial fibrosis at both bases.",
    "Left pleural thickening. No effusion.", "Small hiatal hernia. Lungs clear.", "Patchy consolidation in the right middle lobe.",
    "Bilateral infiltrates. Cannot exclude pneumonia.", "Mild pulmonary edema. Small bilateral effusions.",
    "No focal consolidation, pleural effusion or pneumothorax.", "Left lower lobe atelectasis versus pneumonia.",
    "Large left pneumothorax with mediastinal shift.", "Heart size normal. Lungs clear. No effusion.",
    "Moderate right pleural effusion.", "Left upper lobe nodule, unchanged.", "Possible left lower lobe infiltrate.",
    "Bilateral pleural effusions and cardiomegaly.", "Mass in the left hilum.", "Trace right pleural effusion.",
    "Right middle lobe atelectasis.",
]
SMALL = ["transform.image_size=32", "model.image.image_size=32", "model.image.hidden_sizes=[8,16,32]",
         "model.image.depths=[1,1,1]", "model.embed_dim=32", "train.batch_size=8", "train.threads=2", "train.eval_every=0",
         "train.checkpoint_every=0", "transform.augment=false", "train.lr=3e-3"]


@dataclass(frozen=True)
class Tiny:
    nih: Path                          # Data_Entry_2017.csv, BBox_List_2017.csv, images/
    reports: Path                      # id,text CSV
    labels: dict[str, set[str]]        # image -> its findings
    patients: dict[str, str]           # image -> its patient
    boxes: dict[str, list[Box]]        # image -> its boxes, in the tiny images' pixels


@dataclass(frozen=True)
class Evaluated:
    run: Path
    out: Path
    metrics: dict
    home: Path


@pytest.fixture(scope="session")
def tiny(data_dir, tmp_path_factory) -> Tiny:
    source = data_dir / "nih-cxr14-bbox"
    with open(source / "Data_Entry_2017.csv", newline="") as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)
    side = {row[0]: side_of(row[3], (0.7, 0.1, 0.2), 0) for row in rows}
    chosen = [r for r in rows if side[r[0]] == "train"][:TRAIN] + [r for r in rows if side[r[0]] == "test"][:TEST]
    root = tmp_path_factory.mktemp("tiny-eval")
    nih = root / "nih"
    (nih / "images").mkdir(parents=True)
    for row in chosen:
        with Image.open(source / "images" / row[0]) as image:
            image.convert("L").resize((IMAGE, IMAGE), Image.Resampling.BILINEAR).save(nih / "images" / row[0])
    with open(nih / "Data_Entry_2017.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *chosen])
    names = {row[0] for row in chosen}
    scale = IMAGE / 512
    boxes: dict[str, list[Box]] = {}
    with open(source / "BBox_List_2017.csv", newline="") as f, open(nih / "BBox_List_2017.csv", "w", newline="") as g:
        reader, writer = csv.reader(f), csv.writer(g)
        writer.writerow(next(reader))
        for name, label, *xywh in reader:
            if name in names:
                x, y, w, h = (round(float(v) * scale, 2) for v in xywh)
                writer.writerow([name, label, x, y, w, h])
                boxes.setdefault(name, []).append(Box("Infiltration" if label == "Infiltrate" else label, x, y, w, h))
    reports = root / "reports.csv"
    with open(reports, "w", newline="") as f:
        csv.writer(f).writerows([("id", "text"), *((f"r{i:02d}", text) for i, text in enumerate(REPORTS))])
    labels = {row[0]: set(row[1].split("|")) - {"No Finding"} for row in chosen}
    return Tiny(nih, reports, labels, {row[0]: row[3] for row in chosen}, boxes)


@pytest.fixture(scope="session")
def eval_home(linked_home) -> Path:
    """$MEDKG_HOME of the runs here, with the session's concept index linked in rather than built again."""
    return linked_home("eval-home")


def train_run(name: str, tiny: Tiny, kg: Path, data_dir: Path, home: Path, out: Path, *extra: str) -> Path:
    config = load_config(Path("configs") / f"{name}.yaml", [
        f"data.image_root={tiny.nih}", f"data.reports={tiny.reports}", f"data.kg={kg}", "data.image_cache=false", *SMALL,
        *extra])
    threads = torch.get_num_threads()
    try:
        train(config, out, data_dir, home / "alignment", progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def evaluate_cli(run: Path, out: Path, data_dir: Path, home: Path, *extra: str, dataset: str = "nih-cxr14",
                 root: Path | None = None) -> int:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDKG_HOME", str(home))
        return main(["evaluate", "--checkpoint", str(run), "--dataset", dataset, "--root", str(root), "--out", str(out),
                     "--data-dir", str(data_dir), "--device", "cpu", "-q", *extra])


@pytest.fixture(scope="session")
def evaluated(tiny, open_kg_dir, data_dir, eval_home, tmp_path_factory) -> Evaluated:
    """A medkg run (with the entity decoder) trained for two epochs, evaluated with --probe through the CLI."""
    base = tmp_path_factory.mktemp("runs")
    run = train_run("medkg", tiny, open_kg_dir, data_dir, eval_home, base / "medkg", "model.decoder.dim=32",
                    "model.decoder.ffn=64", "model.decoder.layers=1", "loss.prototypes=8", "train.epochs=2")
    out = base / "eval"
    assert evaluate_cli(run, out, data_dir, eval_home, "--probe", "--bootstrap", "200", root=tiny.nih) == 0
    return Evaluated(run, out, json.loads((out / METRICS_FILE).read_text()), eval_home)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# The files and what they give back


def test_the_files_are_written_and_shaped(evaluated, tiny):
    for name in (METRICS_FILE, SCORES_FILE, PEAKS_FILE, PROMPTS_FILE):
        assert (evaluated.out / name).is_file(), name
    m = evaluated.metrics
    assert {"zero_shot", "zero_shot_prompt", "localization", "retrieval", "probe"} <= set(m)
    assert set(m["zero_shot"]) == {"auc", "auc_ci", "mean_auc"} == set(m["zero_shot_prompt"])
    assert set(m["localization"]) == {"pointing_game", "mean_pointing_game", "random_baseline", "centre_baseline",
                                      "prior_baseline", "shared_peaks"}
    assert m["details"]["score"] == "entity" and m["details"]["split"] == "test"  # the decoder's score is the headline
    assert set(m["zero_shot"]["auc"]) <= set(json.loads((evaluated.out / PROMPTS_FILE).read_text()))
    # the held-out patients only: the test side of the run's split rule
    scored = [row["image"] for row in read_rows(evaluated.out / SCORES_FILE)]
    config = run_config(evaluated.run)
    fractions, seed = tuple(config.data.split), config.data.split_seed
    expected = [name for name, patient in tiny.patients.items() if side_of(patient, fractions, seed) == "test"]
    assert sorted(scored) == sorted(expected) and len(scored) == TEST


def test_the_train_split_scores_the_training_patients_for_diagnostics(evaluated, tiny, data_dir, tmp_path):
    out = tmp_path / "train"
    assert evaluate_cli(evaluated.run, out, data_dir, evaluated.home, "--split", "train", "--bootstrap", "50", root=tiny.nih) == 0
    m = json.loads((out / METRICS_FILE).read_text())
    assert m["details"]["split"] == "train" and m["localization"]["mean_pointing_game"] is not None
    config = run_config(evaluated.run)
    fractions, seed = tuple(config.data.split), config.data.split_seed
    expected = [name for name, patient in tiny.patients.items() if side_of(patient, fractions, seed) == "train"]
    assert sorted(row["image"] for row in read_rows(out / SCORES_FILE)) == sorted(expected) and len(expected) == TRAIN


def test_mean_auc_is_recomputed_from_the_scores_and_the_dataset_labels(evaluated, tiny):
    rows = read_rows(evaluated.out / SCORES_FILE)
    zero_shot = evaluated.metrics["zero_shot"]
    aucs = {}
    for label in rows[0].keys() - {"image"}:
        scores = np.array([float(row[label]) for row in rows])
        positive = np.array([label in tiny.labels[row["image"]] for row in rows])
        value = auc(scores, positive)
        if not math.isnan(value):
            aucs[label] = value
    assert aucs and set(aucs) == set(zero_shot["auc"])
    for label, value in aucs.items():
        assert zero_shot["auc"][label] == pytest.approx(value, abs=1e-12)
        low, high = zero_shot["auc_ci"][label]
        assert 0 <= low <= value <= high <= 1, (label, low, value, high)
    assert zero_shot["mean_auc"] == pytest.approx(np.mean(list(aucs.values())), abs=1e-12)


def test_pointing_game_is_recomputed_from_the_peaks_and_the_boxes(evaluated, tiny):
    peaks = read_rows(evaluated.out / PEAKS_FILE)
    scored = {row["image"] for row in read_rows(evaluated.out / SCORES_FILE)}
    evaluated_labels = set(evaluated.metrics["zero_shot"]["auc"]) | set(evaluated.metrics["details"]["zero_shot"]["one_class"])
    expected = {(name, box.label) for name in scored for box in tiny.boxes.get(name, []) if box.label in evaluated_labels}
    assert {(row["image"], row["label"]) for row in peaks} == expected and len(peaks) == len(expected)
    hits: dict[str, list[bool]] = {}
    for row in peaks:
        x, y = float(row["x"]), float(row["y"])
        assert 0 < x < IMAGE and 0 < y < IMAGE  # the image file's pixels, not the model's 32 px input
        boxes = [b for b in tiny.boxes[row["image"]] if b.label == row["label"]]
        hits.setdefault(row["label"], []).append(any(b.x <= x <= b.x + b.w and b.y <= y <= b.y + b.h for b in boxes))
    loc = evaluated.metrics["localization"]
    assert loc["pointing_game"] == pytest.approx({k: float(np.mean(v)) for k, v in hits.items()})
    assert loc["mean_pointing_game"] == pytest.approx(np.mean([np.mean(v) for v in hits.values()]))
    for name in ("random_baseline", "centre_baseline", "prior_baseline"):
        assert 0 <= loc[name] <= 1


def test_retrieval_and_probe(evaluated):
    retrieval = evaluated.metrics["retrieval"]
    assert retrieval["mode"] == "decoupled" and retrieval["reports"] > 0 and retrieval["images"] == TEST
    assert all(0 <= v <= 1 for v in retrieval["precision"].values()) and "P@1" in retrieval["precision"]
    probe = evaluated.metrics["probe"]
    assert list(probe) == ["1%", "10%", "100%"]
    for block in probe.values():
        assert block["auc"] and 0 <= block["mean_auc"] <= 1 and block["test_images"] == TEST
    assert probe["1%"]["train_images"] <= probe["10%"]["train_images"] <= probe["100%"]["train_images"] == TRAIN


# Scores of one image never depend on the others


def test_an_image_scores_the_same_alone_and_in_a_batch(evaluated, tiny):
    model = AlignmentModel.from_pretrained(evaluated.run / "model").eval()
    config = run_config(evaluated.run)
    transform = ImageTransform(config.transform)
    names = sorted(tiny.labels)[:6]
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(tiny.nih / "images" / n).resize((32, 32))))[None]
                          for n in names])
    prompts = [LabelPrompts("Effusion", model.entity_names.index("pleural effusion"), "pleural effusion",
                            *prompts_for("pleural effusion", [], ["pleural diseases"])),
               LabelPrompts("Cardiomegaly", model.entity_names.index("cardiomegaly"), "cardiomegaly",
                            *prompts_for("cardiomegaly", [], []))]
    positive, negative = class_vectors(model, prompts)
    together = encode_images(model, pixels, transform, list(range(6)), prompts, positive, negative, batch_size=6)
    for i in range(6):
        alone = encode_images(model, pixels, transform, [i], prompts, positive, negative, batch_size=1)
        assert torch.allclose(alone.prompt[0], together.prompt[i], atol=1e-5)
        assert torch.allclose(alone.entity[0], together.entity[i], atol=1e-5)
    # the same vectors as the model's own encode_image
    with torch.no_grad():
        own = model.encode_image(transform(pixels.float() / 255, train=False)).global_
    assert torch.allclose(own, together.global_, atol=1e-5)


# Baselines, peaks and prompts by hand


def test_baselines_follow_their_definitions():
    boxes = {
        "a.png": [Box("Mass", 40, 40, 20, 20), Box("Nodule", 0, 0, 10, 10)],      # Mass covers the centre (50, 50)
        "b.png": [Box("Mass", 0, 0, 20, 50), Box("Mass", 10, 0, 20, 50)],         # two overlapping boxes, off centre
        "c.png": [Box("Mass", 70, 10, 20, 20)],                                   # a training image
    }
    sizes = {"a.png": (100, 100), "b.png": (100, 100)}
    assert covered_share(boxes["b.png"], (100, 100)) == pytest.approx(30 * 50 / 100**2)  # the union, not the sum
    assert covered_share([Box("Mass", 90, 90, 20, 20)], (100, 100)) == pytest.approx(0.01)  # clipped to the image
    priors = prior_points([(box, (100, 100)) for box in boxes["c.png"]] + [(boxes["a.png"][1], (100, 100))], grid=10)
    assert priors["Mass"] == pytest.approx((0.75, 0.25))  # of the box's grid points, the one nearest the centre
    assert priors["Nodule"] == pytest.approx((0.05, 0.05))
    rates = baselines([("a.png", "Mass"), ("b.png", "Mass"), ("a.png", "Nodule")], boxes, sizes, priors)
    assert rates["centre"] == {"Mass": 0.5, "Nodule": 0.0}  # a hit on a.png, a miss on b.png
    assert rates["random"]["Mass"] == pytest.approx((0.04 + 0.15) / 2)
    assert rates["random"]["Nodule"] == pytest.approx(0.01)
    assert rates["prior"] == {"Mass": 0.0, "Nodule": 1.0}  # (75, 25) misses both Mass sets; (5, 5) is in the Nodule box
    peaks = [Peak("a.png", "Mass", 50, 50), Peak("b.png", "Mass", 25, 10), Peak("a.png", "Nodule", 50, 50)]
    assert pointing_game(peaks, boxes) == {"Mass": 1.0, "Nodule": 0.0}


def test_shared_peaks_is_the_share_of_finding_pairs_with_one_peak():
    one = torch.tensor([[0.1, 0.9, 0.0], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1]])  # pairs (0,1) share, (0,2) and (1,2) do not
    apart = torch.eye(3)
    assert shared_peaks([one]) == pytest.approx(1 / 3)
    assert shared_peaks([one, apart]) == pytest.approx(1 / 6)
    assert shared_peaks([one[:2]]) == 1.0 and shared_peaks([apart[:, None].expand(3, 2, 3)]) == 0.0  # [L, h, w] maps too
    assert math.isnan(shared_peaks([one[:1]]))  # one finding: no pair


def test_shared_peaks_is_recomputed_from_the_decoder_maps(evaluated, tiny):
    """The figure over the boxed held-out images, from the model's own attention of every evaluated label."""
    model = AlignmentModel.from_pretrained(evaluated.run / "model").eval()
    config = run_config(evaluated.run)
    corpus = read_corpus("nih-cxr14", tiny.nih, ProblemLog())
    pixels, images = ImageCache().load(corpus.images, 32, ProblemLog(), progress=False)
    prompts = json.loads((evaluated.out / PROMPTS_FILE).read_text())
    columns = [prompts[label]["entity"] for label in prompts]
    boxed = sorted({row["image"] for row in read_rows(evaluated.out / PEAKS_FILE)})
    rows = [i for i, image in enumerate(images) if image.name in boxed]
    with torch.no_grad():
        out = model.encode_image(ImageTransform(config.transform)(pixels[rows].float() / 255, train=False))
        attention = model.entities(out.local, summary=out.pooled)[1][:, columns]
    shared = evaluated.metrics["localization"]["shared_peaks"]
    assert len(rows) > 1 and attention.shape[-1] > 1  # several images, several regions: not a trivial share
    assert shared == pytest.approx(shared_peaks(list(attention)), abs=1e-9)
    # the same wiring on maps whose peaks are known: label j peaks at region j mod N
    kept = label_prompts_of(prompts)
    positive, negative = class_vectors(model, kept)
    boxes = read_nih_boxes(tiny.nih, ProblemLog())
    cases = [(row, label) for row in rows for label in dict.fromkeys(b.label for b in boxes[images[row].name])]
    encoded = encode_images(model, pixels, ImageTransform(config.transform), rows, kept, positive, negative, set(rows))
    regions = attention.shape[-1]
    for row in rows:
        encoded.maps[row] = F.one_hot(torch.arange(len(columns)) % regions, regions).float()
    sides = [side_of(image.patient, (0.7, 0.1, 0.2), 0) for image in images]
    summary, _, _ = _localize(model, config, encoded, cases, images, sides, boxes, kept, False)
    counts = np.bincount(np.arange(len(columns)) % regions)
    assert summary["shared_peaks"] == pytest.approx((counts * (counts - 1)).sum() / (len(columns) * (len(columns) - 1)))


def test_attention_peaks_land_on_cell_centres_in_file_pixels():
    grid = torch.zeros(4, 4)
    grid[0, 0] = 1  # a corner cell: the upsampled map is flat from its centre (8, 8) to the corner
    assert attention_peak(grid, (4, 4), (64, 64)) == (7.5, 7.5)  # the plateau's pixel nearest the image centre
    grid = torch.zeros(4, 4)
    grid[2, 1] = 1
    # the cell's centre (24, 80) in a 64 x 128 file falls between pixels: the tie goes towards the image centre
    assert attention_peak(grid.flatten(), (4, 4), (64, 128)) == (24.5, 79.5)


def test_labels_map_to_entities_by_label_name_or_synonym():
    from alignment.knowledge import EntityVocabulary

    vocabulary = EntityVocabulary("test", ["C1", "C2", "C3"], ["pleural effusion", "hiatal hernia", "opacity"],
                                  ["Effusion", "Hernia", None], [{"C1"}, {"C2"}, {"C3"}],
                                  synonyms=[[], ["hiatus hernia"], []])
    found, missing = entity_rows(["Effusion", "Pleural Effusion", "Hiatus_Hernia", "Lung Opacity", "Opacity"],
                                 vocabulary, ["pleural effusion", "hiatal hernia", "opacity"])
    assert found == {"Effusion": 0, "Pleural Effusion": 0, "Hiatus_Hernia": 1, "Opacity": 2}
    assert missing == ["Lung Opacity"]
    positive, negative = prompts_for("pleural effusion", ["effusion of pleura"], ["pleural diseases"])
    assert positive == ["pleural effusion", "effusion of pleura", "pleural effusion, a kind of pleural diseases"]
    assert negative == [f"no {p}" for p in positive]


def test_bootstrap_matches_resampling_by_hand():
    rng = np.random.default_rng(3)
    states = rng.integers(0, 2, (60, 2))
    scores = np.round(rng.random((60, 2)) + 0.4 * states, 1)  # ties included
    result = bootstrap_aucs(scores, states, resamples=300, seed=7)
    for j in range(2):
        assert result["auc"][j] == pytest.approx(auc(scores[:, j], states[:, j] == 1))
    draws = np.random.default_rng(7).integers(0, 60, size=(300, 60))
    by_hand = [auc(scores[d, 0], states[d, 0] == 1) for d in draws]
    low, high = np.percentile(by_hand, [2.5, 97.5])
    assert (result["low"][0], result["high"][0]) == pytest.approx((low, high))


# Models without a decoder: word–region attention


NAMES = {"Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly", "Effusion": "pleural effusion",
         "Infiltration": "infiltrate", "Mass": "mass", "Nodule": "nodule", "Pneumonia": "pneumonia",
         "Pneumothorax": "pneumothorax"}  # the boxed findings' entities in the chestxray14 vocabulary


def test_a_model_without_a_decoder_localises_by_word_region_attention(evaluated, tiny):
    model = without_decoder(AlignmentModel.from_pretrained(evaluated.run / "model")).eval()
    config = run_config(evaluated.run)
    corpus = read_corpus("nih-cxr14", tiny.nih, ProblemLog())
    pixels, images = ImageCache().load(corpus.images, 32, ProblemLog(), progress=False)
    prompts = [LabelPrompts(label, model.entity_names.index(name), name, *prompts_for(name, [], []))
               for label, name in NAMES.items()]
    positive, negative = class_vectors(model, prompts)
    boxes = read_nih_boxes(tiny.nih, ProblemLog())
    cases = [(row, label) for row, image in enumerate(images) for label in dict.fromkeys(b.label for b in boxes.get(image.name, []))]
    encoded = encode_images(model, pixels, ImageTransform(config.transform), list(range(len(images))), prompts, positive,
                            negative, {row for row, _ in cases})
    assert encoded.entity is None and not encoded.maps and set(encoded.regions) == {row for row, _ in cases}
    sides = [side_of(image.patient, (0.7, 0.1, 0.2), 0) for image in images]
    summary, details, peaks = _localize(model, config, encoded, cases, images, sides, boxes, prompts, progress=False)
    assert details["method"].startswith("word-region attention") and len(peaks) == len(cases)
    assert set(summary) == {"pointing_game", "mean_pointing_game", "random_baseline", "centre_baseline", "prior_baseline",
                            "shared_peaks"}
    assert 0 <= summary["shared_peaks"] <= 1
    row, label = cases[0]  # the first peak by hand: GLoRIA's softmax over regions of γ1·cosine, words then prompts averaged
    with torch.no_grad():
        text = model.encode_text(prompts[list(NAMES).index(label)].positive)
    cos = F.normalize(text.words, dim=-1) @ F.normalize(encoded.regions[row], dim=-1).T
    maps = (config.loss.gloria_gamma[0] * cos).softmax(-1)
    attention = ((maps * text.word_mask[..., None]).sum(1) / text.word_mask.sum(1, keepdim=True)).mean(0)
    assert (peaks[0].x, peaks[0].y) == attention_peak(attention, encoded.grid, (IMAGE, IMAGE))


def label_prompts_of(prompts: dict) -> list[LabelPrompts]:
    """The evaluation's prompts back from `prompts.json` (each kept as `LabelPrompts.as_dict`)."""
    return [LabelPrompts(**p) for p in prompts.values()]


def without_decoder(model: AlignmentModel) -> AlignmentModel:
    """The same encoders and projections without the entity decoder."""
    plain = AlignmentModel(replace(model.config, decoder=None), model.entity_names, None, model.image_encoder,
                           model.text_encoder)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("decoder.", "entity_queries"))})
    return plain


# Bad input: a clean message, never a stack trace


def test_bad_input_gives_a_clean_error(evaluated, tiny, data_dir, tmp_path, capsys):
    home = evaluated.home
    foreign = tmp_path / "old"
    shutil.copytree(evaluated.run, foreign)
    saved = json.loads((foreign / "model" / CONFIG_NAME).read_text())
    (foreign / "model" / CONFIG_NAME).write_text(json.dumps({**saved, "format": 999}))
    capsys.readouterr()
    assert evaluate_cli(foreign, tmp_path / "o1", data_dir, home, root=tiny.nih) == 2
    err = capsys.readouterr().err
    assert err.startswith("medkg: error:") and "another medkg version" in err and "Traceback" not in err

    assert evaluate_cli(evaluated.run, tmp_path / "o2", data_dir, home, dataset="padchest", root=tiny.nih) == 2
    err = capsys.readouterr().err
    assert "unknown dataset layout 'padchest'" in err and "nih-cxr14" in err

    assert evaluate_cli(evaluated.run, tmp_path / "o3", data_dir, home, dataset="chexpert", root=tiny.nih) == 2
    err = capsys.readouterr().err
    assert "medkg: error:" in err and "train.csv" in err  # a layout that is not there names its file

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(evaluated.run / "config.yaml", bare / "config.yaml")
    assert evaluate_cli(bare, tmp_path / "o4", data_dir, home, root=tiny.nih) == 2
    err = capsys.readouterr().err
    assert "holds no trained model" in err and str(bare / "model") in err

    manifest = tmp_path / "manifest.csv"  # a dataset whose only label no entity of the model stands for
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([("image", "Xyzzy"), *((str(tiny.nih / "images" / n), 1) for n in sorted(tiny.labels)[:3])])
    assert evaluate_cli(evaluated.run, tmp_path / "o5", data_dir, home, dataset="csv", root=manifest) == 2
    err = capsys.readouterr().err
    assert "no entity for any label of csv (Xyzzy)" in err and "Traceback" not in err

    damaged = tmp_path / "damaged"  # config.yaml empty, cut short, or bytes that are not UTF-8
    shutil.copytree(evaluated.run, damaged)
    whole = (evaluated.run / "config.yaml").read_text()
    for text, message in (("", "not a whole run config"), (whole[: whole.index("\nloss:")], "loss, train missing"),
                          (b"\xff\xfe data: 1", "cannot be read as a YAML config")):
        (damaged / "config.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        assert evaluate_cli(damaged, tmp_path / "o6", data_dir, home, root=tiny.nih) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("medkg: error:") and message in err and "Traceback" not in err, (message, err)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7))


def test_retrieval_metrics_by_hand():
    similarity = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.3], [0.1, 0.8, 0.7]])
    # query 0's own candidate 0 ranks first; query 1's own (1) ties with candidate 2 and is listed first; query 2's own is second
    assert recall_at(similarity, torch.tensor([0, 1, 2]), (1, 2)) == {"R@1": pytest.approx(2 / 3), "R@2": 1.0}
    # a tie counts against the truth when the tied candidate is listed before it
    assert recall_at(similarity, torch.tensor([0, 2, 2]), (1,)) == {"R@1": pytest.approx(1 / 3)}
    image_present = torch.tensor([[True, False], [False, False]])
    report_present = torch.tensor([[True, True], [False, False], [False, True]])
    relevant = relevance(image_present, report_present)
    assert relevant.tolist() == [[True, False, False], [False, True, False]]  # a normal image: normal reports
    precision = precision_at(similarity[:2], relevant, (1, 2, 3))
    assert precision == {"P@1": 1.0, "P@2": 0.5, "P@3": pytest.approx(1 / 3)}  # each finds its one relevant report first
