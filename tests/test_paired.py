"""Paired corpora: a MIMIC-CXR-JPG layout written by the test (studies of one or two views, each with its
report) trains with the corpus's own pairs, the views of a study fused into one item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignment.config import load_config
from alignment.dataset import prepare_data, study_views
from alignment.metrics import read_metrics
from alignment.train import build_model, train
from kg.problems import ProblemLog

REPORTS = [
    "FINDINGS: Small left pleural effusion. No pneumothorax.\nIMPRESSION: Left effusion.",
    "FINDINGS: Heart size is enlarged. Lungs are clear.\nIMPRESSION: Cardiomegaly.",
    "FINDINGS: No pleural effusion or pneumothorax. Heart size normal.\nIMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Right lower lobe consolidation, possibly pneumonia.\nIMPRESSION: Possible pneumonia.",
    "FINDINGS: Right apical pneumothorax. No effusion.\nIMPRESSION: Pneumothorax.",
    "FINDINGS: Bibasilar atelectasis. Small bilateral effusions.\nIMPRESSION: Atelectasis and effusions.",
]


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory) -> Path:
    """24 studies of 12 patients; even studies have a frontal and a lateral view, odd ones a frontal only."""
    root = tmp_path_factory.mktemp("mimic") / "mimic-cxr-jpg"
    rng = np.random.default_rng(0)
    for study in range(24):
        patient = f"p1{study // 2:07d}"
        folder = root / "files" / patient[:3] / patient
        (folder / f"s5{study:07d}").mkdir(parents=True)
        (folder / f"s5{study:07d}.txt").write_text(REPORTS[study % len(REPORTS)])
        for view in range(2 if study % 2 == 0 else 1):
            pixels = (rng.random((40, 40)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"s5{study:07d}" / f"{study:04d}-{view}.jpg")
    return root


def settings(root: Path, kg: Path, *extra: str):
    return load_config(Path("configs/medkg.yaml"), [
        "data.images=mimic-cxr", f"data.image_root={root}", f"data.reports={root / 'files'}", "data.pairing=paired",
        f"data.kg={kg}", "data.image_cache=false", "transform.image_size=32", "model.image.image_size=32",
        "model.image.hidden_sizes=[8,16,32,64]", "model.decoder.dim=32", "model.decoder.ffn=64", "model.embed_dim=32",
        "loss.targets=hard", "loss.prototypes=8", "train.batch_size=4", "train.epochs=3", "train.eval_every=0",
        "train.lr=3e-3", *extra])


def test_study_views_fill_and_fuse(mimic_root, open_kg_dir, data_dir, tmp_path):
    config = settings(mimic_root, open_kg_dir)
    data = prepare_data(config, data_dir, tmp_path / "cache", ProblemLog(), progress=False)
    assert data.views is not None and data.views.shape == (36, 2)
    studies = {image.study for image in data.images}
    assert len(studies) == 24 and len(data.images) == 36
    for row, image in enumerate(data.images):
        mates = [r for r, other in enumerate(data.images) if other.study == image.study]
        assert sorted(set(data.views[row].tolist())) == mates  # one view repeated, or both views
    # one training item per study, each with its own report
    assert len(data.train_images) == len({data.images[r].study for r in data.train_images.tolist()})
    for r in data.train_images.tolist():
        report = data.reports[int(data.report_of_image[r])]
        assert report.id == data.images[r].study or report.id.endswith(data.images[r].study.lstrip("s"))

    model = build_model(config, data).eval()
    pixels = torch.rand(2, 1, 1, 32, 32)
    single = model.encode_image(pixels[:, 0])
    repeated = model.encode_image(pixels.expand(-1, 2, -1, -1, -1))
    assert torch.allclose(single.global_, repeated.global_, atol=1e-6)  # a repeated view changes nothing
    assert repeated.local.shape[1] == 2 * single.local.shape[1]
    two = model.encode_image(torch.rand(2, 2, 1, 32, 32))
    assert torch.allclose(two.global_.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_paired_training_uses_own_reports_and_loss_falls(mimic_root, open_kg_dir, data_dir, tmp_path):
    config = settings(mimic_root, open_kg_dir, "train.epochs=6")
    summary = train(config, tmp_path / "run", data_dir, tmp_path / "cache", progress=False)
    losses: dict[int, list[float]] = {}
    for row in read_metrics(tmp_path / "run" / "metrics.csv"):
        if row["split"] == "train" and row["name"] == "loss":
            losses.setdefault(row["epoch"], []).append(row["value"])
    first, last = np.mean(losses[0]), np.mean(losses[max(losses)])
    assert last < first, (first, last)
    assert summary.steps == 6 * (len(losses[0]))


def test_study_views_helper_caps_views():
    from alignment.data.records import ImageRecord

    images = [ImageRecord(Path(f"{i}.jpg"), f"{i}.jpg", "p", "s1" if i < 3 else "s2", None) for i in range(4)]
    views = study_views(images, 2)
    assert views.tolist() == [[0, 1], [0, 1], [0, 1], [3, 3]]
