"""`medkg explain` on a tiny trained run and real NIH images: maps in the file's pixel coordinates (the whole file
resized to the model's input, as evaluation reads it, or with --resize crop the transform's shorter-side resize and
centre crop undone), overlays, entity look-up by name, synonym and concept id, --top, word maps of a report, and
the viewer page rendered by headless Chromium.

Sizes: the run is `medkg` for one epoch on 24 real NIH images at 64 px (their real labels) and 24 short
reports, a three-stage ResNet of widths 8..32 at 64 px (a 4x4 region grid), one CPU thread. Explanations run
on two real 512x512 shared NIH images and a non-square crop of one of them.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignment.config import load_config
from alignment.evaluate import run_config
from alignment.explain import (
    EntityExplanation,
    EntityResolver,
    UnknownEntityError,
    crop_box,
    grid_to_file,
    shared_peak,
)
from alignment.model import AlignmentModel
from alignment.states import PRESENT
from alignment.viewer import STAGE_LEFT, STAGE_TOP, stage_size, write_viewer
from encoders.transforms import ImageTransform, resize_to
from medkg.api import explain as api
from medkg.cli import main

ROOT = Path(__file__).resolve().parents[1]
REPORTS = [
    "Small left pleural effusion.", "No pneumothorax or effusion. Heart size normal.", "Possible right lower lobe pneumonia.",
    "Cardiomegaly. No acute disease.", "Large right pleural effusion with adjacent atelectasis.",
    "Moderate cardiomegaly with pulmonary edema.", "No acute cardiopulmonary disease.", "Left apical pneumothorax.",
    "Bibasilar atelectasis. No pneumonia.", "Right upper lobe mass suspicious for malignancy.",
    "Pulmonary nodule in the left upper lobe.", "Hyperinflated lungs consistent with emphysema.",
    "Interstitial fibrosis at both bases.", "Left pleural thickening. No effusion.", "Small hiatal hernia. Lungs clear.",
    "Patchy consolidation in the right middle lobe.", "Bilateral infiltrates. Cannot exclude pneumonia.",
    "Enlarged cardiac silhouette. Possible small effusion.", "Calcified granuloma in the right lung.",
    "Mild cardiomegaly. Lungs clear.", "Right pleural effusion, possibly loculated.", "Emphysema. No acute process.",
    "Pleural thickening at the right apex.", "Consolidation in the left lower lobe consistent with pneumonia.",
]
REPORT = "FINDINGS: Moderate right pleural effusion. The heart is enlarged.\nIMPRESSION: Effusion and cardiomegaly."
SIZE = 64
OVERRIDES = ["transform.image_size=64", "model.image.image_size=64", "model.image.hidden_sizes=[8,16,32]",
             "model.image.depths=[1,1,1]", "model.embed_dim=32", "model.decoder.dim=32", "model.decoder.ffn=64",
             "loss.prototypes=8", "train.batch_size=8", "train.epochs=1", "train.eval_every=0", "train.checkpoint_every=0",
             "train.threads=1", "transform.augment=false", "data.image_cache=false"]


@pytest.fixture(scope="module")
def home(linked_home) -> Path:
    """A $MEDKG_HOME whose alignment cache links the session's concept index of the open graph."""
    return linked_home("explain-home")


@pytest.fixture(scope="module")
def run(home, data_dir, open_kg_dir, tmp_path_factory) -> Path:
    """A medkg run of one epoch on 24 real NIH images at 64 px."""
    from alignment.train import train

    root = tmp_path_factory.mktemp("explain-data")
    source = data_dir / "nih-cxr14-bbox"
    with open(source / "Data_Entry_2017.csv", newline="") as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)
    nih = root / "nih"
    (nih / "images").mkdir(parents=True)
    chosen = rows[:24]
    for row in chosen:
        with Image.open(source / "images" / row[0]) as image:
            image.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(nih / "images" / row[0])
    with open(nih / "Data_Entry_2017.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *chosen])
    with open(root / "reports.csv", "w", newline="") as f:
        csv.writer(f).writerows([("id", "text"), *((f"r{i:02d}", text) for i, text in enumerate(REPORTS))])
    config = load_config(ROOT / "configs" / "medkg.yaml", [
        f"data.image_root={nih}", f"data.reports={root / 'reports.csv'}", f"data.kg={open_kg_dir}", *OVERRIDES])
    threads = torch.get_num_threads()
    try:
        train(config, root / "run", data_dir, home / "alignment", progress=False)
    finally:
        torch.set_num_threads(threads)
    return root / "run"


@pytest.fixture
def environment(home, monkeypatch):
    monkeypatch.setenv("MEDKG_HOME", str(home))


@pytest.fixture(scope="module")
def images(data_dir, tmp_path_factory) -> list[Path]:
    """Two real 512x512 shared NIH images and a non-square (512 wide, 360 tall) crop of the first."""
    files = sorted((data_dir / "nih-cxr14-bbox" / "images").glob("*.png"))[:2]
    wide = tmp_path_factory.mktemp("wide") / "wide.png"
    with Image.open(files[0]) as image:
        assert image.size == (512, 512)
        image.crop((0, 60, 512, 420)).save(wide)
    return [*files, wide]


@pytest.fixture(scope="module")
def explained(run, images, home, tmp_path_factory):
    out = tmp_path_factory.mktemp("explained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDKG_HOME", str(home))
        return api.explain(images, run, out, entities=["pleural effusion", "Cardiomegaly"], report=REPORT, device="cpu")


@pytest.fixture(scope="module")
def trained(run) -> tuple[AlignmentModel, ImageTransform]:
    return AlignmentModel.from_pretrained(run / "model").eval(), ImageTransform(run_config(run).transform)


def model_outputs(trained, path: Path, resize: str):
    """The model's own logits and attention grid for one image, computed without alignment.explain: the file as
    evaluation reads it (resized whole to the input size, 8-bit), or the file itself for the transform to crop."""
    from alignment.data.images import read_image

    model, transform = trained
    pixels = torch.round(read_image(path, SIZE) * 255) / 255 if resize == "stretch" else read_image(path)
    with torch.no_grad():
        out = model.encode_image(transform(pixels[None], train=False))
        logits, attention = model.entities(out.local, summary=out.pooled)
    return logits[0], attention[0].view(-1, *out.grid)


def check_maps(out: Path, manifest: dict, images: list[Path], trained, resize: str) -> None:
    """Per image and entity: the model's own score, prediction and grid; an overlay; a map at the file's size whose
    maximum lies in the file region of the grid's largest cell; with crop, nothing in the cropped-off margins."""
    assert manifest["resize"] == resize and [Path(i["file"]) for i in manifest["images"]] == images
    for image, path in zip(manifest["images"], images):
        with Image.open(path) as source:
            width, height = source.size
        assert image["size"] == [height, width] and image["grid"] == [4, 4]
        top, left, bottom, right = image["crop"]
        if resize == "stretch":
            assert image["crop"] == [0, 0, height, width]
        logits, attention = model_outputs(trained, path, resize)
        for entity in image["entities"]:
            values = np.load(out / entity["map"])
            assert values.shape == (height, width) and values.dtype == np.float32 and np.isclose(values.max(), 1.0)
            with Image.open(out / entity["overlay"]) as figure:  # the image at the file's size, caption, colour bar
                assert figure.width > width and figure.height > height
                shown = np.asarray(figure.convert("RGB"))[figure.height - height:, :width].astype(np.int16)
            chroma = shown.max(-1) - shown.min(-1)
            assert (chroma > 30).mean() > 0.1  # heat-map colours over the radiograph
            k = entity["index"]
            probabilities = logits[k].softmax(-1)
            assert entity["score"] == pytest.approx(float(probabilities[PRESENT]), abs=1e-5)
            assert entity["prediction"] == ("absent", "present", "uncertain")[int(probabilities.argmax())]
            grid = attention[k].numpy()
            assert np.allclose(entity["attention"], grid, atol=1e-5)
            y, x = np.unravel_index(np.argmax(values), values.shape)
            r, c = np.unravel_index(np.argmax(grid), grid.shape)
            assert (int((y + 0.5 - top) / (bottom - top) * 4), int((x + 0.5 - left) / (right - left) * 4)) == (r, c)
            if resize == "stretch":
                assert values.min() > 0  # the grid covers the whole file
            elif width != height:  # the centre crop's margins get nothing
                assert left > 0 and values[:, : int(left)].max() == 0 and values[:, int(np.ceil(right)):].max() == 0
                assert values[:, int(np.ceil(left)):int(right)].min() > 0
                assert chroma[:, : int(left)].max() == 0  # the margins show the plain radiograph


# Geometry


@pytest.mark.parametrize("height,width,size", [(512, 512, 64), (400, 520, 64), (521, 300, 48), (64, 200, 64), (333, 334, 160)])
def test_crop_box_is_where_the_transform_takes_its_square(height, width, size):
    """Ramps of file coordinates through the real resize + crop land where crop_box says each output pixel is."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    box = crop_box(height, width, size)
    centres = torch.arange(size) + 0.5
    seen_x = resize_to(xs[None, None].float(), size)[0, 0, size // 2]
    seen_y = resize_to(ys[None, None].float(), size)[0, 0, :, size // 2]
    expected_x = box.left + centres * (box.right - box.left) / size
    expected_y = box.top + centres * (box.bottom - box.top) / size
    assert torch.allclose(seen_x[2:-2], expected_x[2:-2].float(), atol=1e-3)  # the antialias blur aside at the ends
    assert torch.allclose(seen_y[2:-2], expected_y[2:-2].float(), atol=1e-3)


def test_grid_to_file_keeps_the_peak_in_its_region_and_zeroes_the_margins():
    rng = np.random.default_rng(0)
    box = crop_box(300, 420, 64)  # resized to 64x89, 12 columns cropped on the left: about 57 px of the file
    for _ in range(20):
        grid = rng.random((4, 5))
        values = grid_to_file(grid, box)
        assert values.shape == (300, 420) and values.dtype == np.float32
        assert 56 < box.left < 57 and values[:, :56].max() == 0 and values[:, 57:358].min() > 0
        assert values[:, int(np.ceil(box.right)):].max() == 0
        assert grid.max() - 0.02 < values.max() <= grid.max() + 1e-6  # pixel centres fall near, not on, region centres
        y, x = np.unravel_index(np.argmax(values), values.shape)
        r, c = np.unravel_index(np.argmax(grid), grid.shape)
        assert int((y + 0.5 - box.top) / (box.bottom - box.top) * 4) == r
        assert int((x + 0.5 - box.left) / (box.right - box.left) * 5) == c


# Explanations of real images


def test_maps_and_overlays_per_image_and_entity(explained, images, trained):
    check_maps(explained.out, explained.manifest, images, trained, "stretch")
    for image, path in zip(explained.manifest["images"], images):
        assert [e["name"] for e in image["entities"]] == ["pleural effusion", "cardiomegaly"]
        assert {"pleural effusion", "cardiomegaly"} <= set(image["scores"])
        _, attention = model_outputs(trained, path, "stretch")
        peaks = {int(attention[e["index"]].argmax()) for e in image["entities"]}
        assert image["shared_peak"] == (len(peaks) == 1)
    shared = sum(bool(image["shared_peak"]) for image in explained.manifest["images"])
    assert str(explained).count("all 2 maps peak at the same region") == shared  # the terminal says it per image
    manifest = json.loads(json.dumps(explained.manifest))
    for image, flag in zip(manifest["images"], (True, False, None)):
        image["shared_peak"] = flag
    lines = str(replace(explained, manifest=manifest)).splitlines()
    noted = [i for i, line in enumerate(lines) if "maps peak at the same region" in line]
    first, second = (lines.index(next(line for line in lines if line.startswith(image["file"] + " ("))) for image in
                     manifest["images"][:2])
    assert len(noted) == 1 and first < noted[0] < second  # under the flagged image only


def test_shared_peak_says_whether_the_entities_maps_peak_at_one_region():
    def entity(*grid: float) -> EntityExplanation:
        return EntityExplanation(0, "e", np.array([0.9, 0.1, 0.0]), np.array(grid, dtype=np.float32).reshape(2, 2))

    assert shared_peak([entity(0.1, 0.7, 0.1, 0.1), entity(0.2, 0.5, 0.2, 0.1)]) is True
    assert shared_peak([entity(0.1, 0.7, 0.1, 0.1), entity(0.6, 0.2, 0.1, 0.1)]) is False
    assert shared_peak([entity(0.1, 0.7, 0.1, 0.1)]) is None


def test_viewer_says_when_the_maps_share_their_peak(explained, chromium, tmp_path):
    manifest = json.loads(json.dumps(explained.manifest))
    manifest["images"][0]["shared_peak"], manifest["images"][1]["shared_peak"] = True, False
    page = write_viewer(tmp_path, manifest)

    def note(fragment: str) -> str:
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--virtual-time-budget=3000", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                              "--dump-dom", f"{page.as_uri()}#{fragment}"], check=True, capture_output=True,
                             text=True, timeout=120).stdout
        return dom.split('id="peak-note">')[1].split("</div>")[0]

    assert "peaks at the same region" in note("image=0&entity=0")
    assert note("image=1&entity=0") == ""


def test_report_words_get_maps(explained, images):
    report = explained.manifest["report"]
    assert report["text"] == REPORT
    words = [w for w in report["words"] if w["mapped"]]
    assert "effusion" in [w["text"] for w in words] and not any(w["text"] in ".:" for w in words)
    for w in report["words"]:
        assert REPORT[w["span"][0]:w["span"][1]] == w["text"]
    for image in explained.manifest["images"]:
        assert [w["index"] for w in image["words"]] == [w["index"] for w in words]
        for word in image["words"]:
            values = np.load(explained.out / word["map"])
            assert values.shape == tuple(image["size"]) and np.isclose(values.max(), 1.0)
            assert np.isclose(np.sum(word["attention"]), 1.0, atol=1e-4)  # a softmax over the regions


# Entities by name, synonym, concept id; errors


def test_entities_resolve_by_synonym_label_and_concept_id(run, trained, data_dir, environment):
    names, config = trained[0].entity_names, run_config(run)
    effusion = names.index("pleural effusion")
    # the graph's names (its concept index, when built): a concept id, case and plural, synonyms
    assert api.resolve_entities(names, ["RADLEX:RID34539", "Pleural Effusions"], run, config) == [effusion]
    assert api.resolve_entities(names, ["hiatus hernia", "IPF"], run, config) == [
        names.index("hiatal hernia"), names.index("pulmonary fibrosis")]
    cardiomegaly = names.index("cardiomegaly")
    # the run's vocabulary file, when it has one: dataset labels, synonyms, concept ids and the concepts covered
    from alignment.knowledge.vocabulary import EntityVocabulary

    ids = [f"T:{i}" for i in range(len(names))]
    vocabulary = EntityVocabulary(
        "chestxray14", ids, names, ["Effusion" if n == "pleural effusion" else None for n in names],
        [{ids[i], "T:loculated"} if i == effusion else {ids[i]} for i in range(len(names))],
        synonyms=[["enlarged heart"] if i == cardiomegaly else [] for i in range(len(names))])
    vocabulary.save(run / "vocabulary.json")
    try:
        assert api.resolve_entities(names, ["Effusion", "enlarged heart", "T:3", "t:loculated"], run, config) == [
            effusion, cardiomegaly, 3]
    finally:
        (run / "vocabulary.json").unlink()
    with pytest.raises(UnknownEntityError) as error:
        EntityResolver(names).resolve("pleural efusion")
    assert error.value.closest[0] == "pleural effusion"


def test_cli_unknown_entity_is_a_clean_error_naming_the_closest(run, images, tmp_path, capsys, environment):
    code = main(["explain", str(images[0]), "--checkpoint", str(run), "--entities", "cardiomegaly,pleural efusion",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("medkg: error: unknown entity 'pleural efusion'") and "closest: pleural effusion" in err
    assert not (tmp_path / "out").exists()


def test_cli_top_k_with_the_transform_crop_and_missing_inputs(run, images, trained, tmp_path, capsys, environment):
    chosen = [images[0], images[2]]  # a square file and the non-square one
    assert main(["explain", *map(str, chosen), "--checkpoint", str(run / "model"), "--top", "3", "--resize", "crop",
                 "--out", str(tmp_path / "top"), "--device", "cpu"]) == 0
    assert "index.html" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "top" / "explain.json").read_text())
    check_maps(tmp_path / "top", manifest, chosen, trained, "crop")
    for image in manifest["images"]:
        scores = [e["score"] for e in image["entities"]]
        assert len(scores) == 3 and scores == sorted(image["scores"].values(), reverse=True)[:3]
    assert main(["explain", str(tmp_path / "missing.png"), "--checkpoint", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "image not found" in capsys.readouterr().err
    assert main(["explain", str(images[0]), "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no trained model" in capsys.readouterr().err


# The viewer page


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def test_viewer_references_only_local_files(explained):
    html = (explained.out / "index.html").read_text()
    parser = _References()
    parser.feed(html)
    assert not parser.found  # the radiographs are set from the inlined data; nothing else is referenced
    assert "http://" not in html and "https://" not in html and "@import" not in html
    for image in explained.manifest["images"]:
        assert not Path(image["radiograph"]).is_absolute() and (explained.out / image["radiograph"]).is_file()
        assert f'"radiograph":"{image["radiograph"]}"' in html


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):  # `make test` installs it first
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                       shell=True, check=True, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    assert found, "headless Chromium is needed (Debian: apt-get install chromium; `make test` installs it)"
    return found


def screenshot(chromium: str, page: Path, fragment: str, out: Path) -> np.ndarray:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                    "--force-device-scale-factor=1", "--window-size=1400,900", "--virtual-time-budget=3000",
                    f"--user-data-dir={out.parent / 'chromium-profile'}", f"--screenshot={out}",
                    f"{page.as_uri()}#{fragment}"], check=True, capture_output=True, timeout=120)
    with Image.open(out) as shot:
        return np.asarray(shot.convert("RGB")).astype(np.int16)


def test_chromium_draws_the_overlay_and_toggles_it(explained, chromium, tmp_path):
    page, image = explained.out / "index.html", explained.manifest["images"][0]
    height, width = stage_size(*image["size"])
    on = screenshot(chromium, page, "image=0&entity=0&overlay=on&opacity=0.8", tmp_path / "on.png")
    off = screenshot(chromium, page, "image=0&entity=0&overlay=off", tmp_path / "off.png")
    region = (slice(STAGE_TOP + 2, STAGE_TOP + height - 2), slice(STAGE_LEFT + 2, STAGE_LEFT + width - 2))

    def chroma(shot: np.ndarray) -> np.ndarray:
        return shot.max(-1) - shot.min(-1)

    # overlay off: the plain radiograph, grey, where it should be
    assert (chroma(off[region]) > 30).mean() < 0.001
    with Image.open(explained.out / image["radiograph"]) as grey:
        expected = np.asarray(grey.convert("L").resize((width, height), Image.Resampling.BILINEAR)).astype(np.int16)
    assert np.abs(off[region][..., 0] - expected[2:-2, 2:-2]).mean() < 12
    # overlay on: heat-map colours over the image, and the view differs from the plain radiograph
    assert (chroma(on[region]) > 30).mean() > 0.2
    assert np.abs(on[region] - off[region]).mean() > 10
