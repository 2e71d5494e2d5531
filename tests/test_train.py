"""`medkg train` end to end on a tiny copy of the real data: every shipped CPU config trains and its loss
falls, the saved model loads with the trained weights, a run killed mid-epoch resumes to the weights of an
uninterrupted one, configs are validated strictly, the seed decides the weights, bad input is skipped, and
images and reports are split by patient.

Sizes: 48 real NIH images (their real labels) at 32 px, 60 short reports, a three-stage ResNet of widths
8..32 (a 2x2 region grid for the local losses), batches of 8 (4 steps an epoch), one CPU thread: torch's
default of two threads is tens of times slower on a busy two-core machine.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from alignment.config import load_config
from alignment.data.split import side_of
from alignment.dataset import prepare_data
from alignment.metrics import read_metrics
from alignment.model import AlignmentModel
from alignment.train import plan_epochs
from kg.problems import ProblemLog
from kg.sources import iu_xray
from medkg.api import align
from medkg.cli import main

ROOT = Path(__file__).resolve().parents[1]
CPU_CONFIGS = ("clip", "gloria", "kad", "medclip", "medkg", "mgca")
BATCH = 8
SMALL = ["transform.image_size=32", "model.image.image_size=32", "model.image.hidden_sizes=[8,16,32]",
         "model.image.depths=[1,1,1]", "model.embed_dim=32", f"train.batch_size={BATCH}", "train.threads=1"]
DECODER = ["model.decoder.dim=32", "model.decoder.ffn=64"]  # the entity decoder of kad and medkg, small
LOSS_TERMS = {
    "clip": {"clip"},
    "medclip": {"clip"},
    "gloria": {"gloria_local", "gloria_global"},
    "mgca": {"clip", "mgca_cta", "prototype", "prototype_anchor"},  # the anchor term logged, 0 (no anchors)
    "kad": {"clip", "entity_image", "entity_text"},
    "medkg": {"clip", "entity_image", "entity_text", "entity_region", "prototype", "prototype_anchor"},
}
REPORTS = [
    "Small left pleural effusion.",
    "No pneumothorax or effusion. Heart size normal.",
    "Possible right lower lobe pneumonia.",
    "Cardiomegaly. No acute disease.",
    "FINDINGS: Large right pleural effusion with adjacent atelectasis.\nIMPRESSION: Right effusion.",
    "Moderate cardiomegaly with pulmonary edema.",
    "No acute cardiopulmonary disease.",
    "Left apical pneumothorax.",
    "Small right pneumothorax. No effusion.",
    "Bibasilar atelectasis. No pneumonia.",
    "FINDINGS: The lungs are clear. Heart size is normal.\nIMPRESSION: Normal chest.",
    "Right upper lobe mass suspicious for malignancy.",
    "Pulmonary nodule in the left upper lobe.",
    "Multiple pulmonary nodules, likely metastases.",
    "Hyperinflated lungs consistent with emphysema.",
    "Interstitial fibrosis at both bases.",
    "Left pleural thickening. No effusion.",
    "Small hiatal hernia. Lungs clear.",
    "Patchy consolidation in the right middle lobe, may represent pneumonia.",
    "Bilateral infiltrates. Cannot exclude pneumonia.",
    "Mild pulmonary edema. Small bilateral effusions.",
    "Enlarged cardiac silhouette. Possible small effusion.",
    "No focal consolidation, pleural effusion or pneumothorax.",
    "Stable cardiomegaly. No pneumothorax.",
    "Left lower lobe atelectasis versus pneumonia.",
    "Right lower lobe consolidation.",
    "FINDINGS: No pleural effusion. Mild cardiomegaly.\nIMPRESSION: Cardiomegaly.",
    "Large left pneumothorax with mediastinal shift.",
    "Probable right basilar atelectasis.",
    "Emphysema. No acute process.",
    "Heart size normal. Lungs clear. No effusion.",
    "Moderate right pleural effusion.",
    "Diffuse interstitial edema.",
    "Calcified granuloma in the right lung. No acute disease.",
    "Left upper lobe nodule, unchanged.",
    "Possible left lower lobe infiltrate.",
    "No evidence of pneumonia. Heart normal in size.",
    "Bilateral pleural effusions and cardiomegaly.",
    "Subsegmental atelectasis in the left base.",
    "Pneumothorax has resolved. Small residual effusion.",
    "Fibrotic changes in both upper lobes.",
    "Mass in the left hilum.",
    "Questionable nodule in the right base.",
    "Pleural thickening at the right apex.",
    "Consolidation in the left lower lobe consistent with pneumonia.",
    "No cardiomegaly. No pleural effusion.",
    "Trace right pleural effusion.",
    "Mild cardiomegaly. Lungs clear.",
    "Pulmonary edema has improved.",
    "Right middle lobe atelectasis.",
    "Normal chest radiograph.",
    "Hyperexpanded lungs. Emphysema. No pneumothorax.",
    "Left basilar opacity, atelectasis or pneumonia.",
    "Small left apical pneumothorax, unchanged.",
    "Cardiomegaly with vascular congestion.",
    "No acute findings. No pneumothorax.",
    "Large hiatal hernia.",
    "Right pleural effusion, possibly loculated.",
    "Lungs are clear without infiltrate or effusion.",
    "Diffuse bilateral infiltrates concerning for edema or infection.",
]
# Run B of the resume test: the CLI, pausing once it has logged step PAUSE_AT (before that step's checkpoint
# would be written), so that the kill lands there whatever the machine's speed. The pause changes no number.
SLOW_CLI = """
import os, sys, time
from alignment import metrics
log, pause_at, pause_s = metrics.MetricsLog.log, int(os.environ["PAUSE_AT"]), float(os.environ.get("PAUSE_S", 60))
metrics.MetricsLog.log = lambda self, step, *a, **k: (log(self, step, *a, **k), step >= pause_at and time.sleep(pause_s))
from medkg.cli import main
sys.exit(main(sys.argv[1:]))
"""


# 1. The tiny data


@dataclass(frozen=True)
class Tiny:
    nih: Path       # NIH ChestX-ray14 layout: Data_Entry_2017.csv + images/
    reports: Path   # id,text CSV


@pytest.fixture(scope="session")
def tiny(data_dir, tmp_path_factory) -> Tiny:
    """48 real NIH images at 64 px with their CSV rows (24 of patients with several images, so that the
    patient split has something to keep together), and the reports above."""
    root = tmp_path_factory.mktemp("tiny")
    source = data_dir / "nih-cxr14-bbox"
    with open(source / "Data_Entry_2017.csv", newline="") as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)
    count: dict[str, int] = {}
    for row in rows:
        count[row[3]] = count.get(row[3], 0) + 1
    chosen = [r for r in rows if count[r[3]] > 1][:24]
    chosen += [r for r in rows if count[r[3]] == 1][: 48 - len(chosen)]
    nih = root / "nih"
    (nih / "images").mkdir(parents=True)
    for row in chosen:
        with Image.open(source / "images" / row[0]) as image:
            image.convert("L").resize((64, 64), Image.Resampling.BILINEAR).save(nih / "images" / row[0])
    with open(nih / "Data_Entry_2017.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *chosen])
    reports = root / "reports.csv"
    write_reports(reports, [(f"r{i:02d}", text) for i, text in enumerate(REPORTS)])
    return Tiny(nih, reports)


@pytest.fixture(scope="session")
def train_home(linked_home) -> Path:
    """$MEDKG_HOME of every run here, the session's concept index linked in."""
    return linked_home("train-home")


@pytest.fixture(autouse=True)
def environment(train_home, monkeypatch):
    monkeypatch.setenv("MEDKG_HOME", str(train_home))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # train.threads=1 sets it for the whole process


@pytest.fixture(scope="session")
def prepared(tiny, open_kg_dir, data_dir, train_home):
    """The tiny data as every NIH run here sees it."""
    config = load_config(align.config_path("medkg"), settings(tiny, open_kg_dir, *DECODER))
    return prepare_data(config, data_dir, train_home / "alignment", ProblemLog(), progress=False)


def write_reports(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("id", "text"), *rows])


def settings(tiny: Tiny, kg: Path, *extra: str) -> list[str]:
    return [f"data.image_root={tiny.nih}", f"data.reports={tiny.reports}", f"data.kg={kg}", *SMALL, *extra]


def train(config: str, out: Path, data_dir: Path, overrides: list[str], problems: ProblemLog | None = None):
    return align.train(config, out, data_dir, overrides, progress=False, problems=problems)


def cli_args(config: str, out: Path, data_dir: Path, overrides: list[str]) -> list[str]:
    return ["train", "--config", config, "--out", str(out), "--data-dir", str(data_dir), "-q",
            *[part for item in overrides for part in ("--set", item)]]


def losses_by_epoch(run: Path) -> dict[int, list[float]]:
    found: dict[int, list[float]] = {}
    for row in read_metrics(run / "metrics.csv"):
        if row["split"] == "train" and row["name"] == "loss":
            found.setdefault(row["epoch"], []).append(row["value"])
    return found


def weights(run: Path) -> dict[str, torch.Tensor]:
    """The saved model's heads and image encoder weights."""
    found = load_file(str(run / "model" / "heads.safetensors"))
    files = sorted((run / "model" / "image").glob("*.safetensors"))
    assert files, f"no image encoder weights in {run / 'model' / 'image'}"
    for file in files:
        found.update({f"image/{k}": v for k, v in load_file(str(file)).items()})
    return found


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


def steps_per_epoch(prepared) -> int:
    return len(prepared.train_images) // BATCH


def test_the_tiny_data_gives_several_steps_an_epoch(prepared):
    assert len(prepared.images) == 48 and len(prepared.reports) == len(REPORTS)
    assert steps_per_epoch(prepared) >= 3  # room for a kill mid-epoch
    assert prepared.vocabulary.num_labels == 14


# 2. Every shipped CPU config


def test_every_shipped_cpu_config_is_tested():
    assert set(align.shipped_configs()) == {*CPU_CONFIGS, "medkg-gpu"}


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_shipped_config_trains_its_loss_falls_and_the_model_loads(name, tiny, open_kg_dir, data_dir, prepared, tmp_path):
    epochs = 5
    overrides = settings(tiny, open_kg_dir, *(DECODER if name in ("kad", "medkg") else ()), f"train.epochs={epochs}",
                         "train.lr=3e-3", "transform.augment=false", "train.checkpoint_every=0", "train.eval_every=2")
    run = tmp_path / name
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    summary = train(name, run, data_dir, overrides)
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers  # training's own are gone once it returns
    steps = steps_per_epoch(prepared)
    assert (summary.epochs, summary.steps) == (epochs, epochs * steps) and math.isfinite(summary.loss)

    # the loss falls: the last epoch's mean below the first's
    losses = losses_by_epoch(run)
    assert sorted(losses) == list(range(epochs)) and all(len(v) == steps for v in losses.values())
    assert all(math.isfinite(v) for values in losses.values() for v in values)
    first, last = sum(losses[0]) / steps, sum(losses[epochs - 1]) / steps
    assert last < first, f"{name}: mean loss {first:.4f} in the first epoch, {last:.4f} in the last"
    rows = read_metrics(run / "metrics.csv")
    names = {r["name"] for r in rows if r["split"] == "train"}
    assert LOSS_TERMS[name] | {"loss", "lr", "temperature"} <= names
    assert not names & ({t for terms in LOSS_TERMS.values() for t in terms} - LOSS_TERMS[name])
    if name == "mgca":
        assert {r["value"] for r in rows if r["name"] == "prototype_anchor"} == {0.0}
    valid_epochs = {r["epoch"] for r in rows if r["split"] == "valid" and r["name"] == "prompt_mean_auc"}
    assert valid_epochs == {1, 3, epochs - 1}  # every second epoch, and the last
    assert set(summary.valid) == ({"prompt_mean_auc", "entity_mean_auc"} if name in ("kad", "medkg") else {"prompt_mean_auc"})

    # config.yaml: the medkg version and the whole validated config
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved.pop("medkg_version") == version("medkg")
    assert saved == load_config(align.config_path(name), overrides).as_dict()
    assert load_config(run / "config.yaml").as_dict() == saved  # a run's config repeats it (`--config RUN/config.yaml`)

    # model/: the trained weights (the checkpoint's, written at the last epoch's end), a fixed embedding
    model = AlignmentModel.from_pretrained(run / "model").eval()
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (checkpoint["step"], checkpoint["epoch"], checkpoint["batches"]) == (epochs * steps, epochs, 0)
    trained = {k.removeprefix("model."): v for k, v in checkpoint["objective"].items() if k.startswith("model.")}
    assert_same_weights(model.state_dict(), trained)
    assert model.entity_names == prepared.vocabulary.names
    assert (model.decoder is not None) == (name in ("kad", "medkg"))
    pixels = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        once, again = model.encode_image(pixels).global_, model.encode_image(pixels).global_
    assert once.shape == (3, 32) and torch.isfinite(once).all() and torch.equal(once, again)
    assert torch.allclose(once.norm(dim=-1), torch.ones(3), atol=1e-5)


# 3. Resumption


@pytest.fixture(scope="module")
def uninterrupted(tiny, open_kg_dir, data_dir, train_home, tmp_path_factory) -> tuple[Path, list[str]]:
    """A medkg run of 3 epochs (seed 0), checkpointed every step: the reference of the resumption and
    determinism tests, and the run the damage test copies."""
    overrides = settings(tiny, open_kg_dir, *DECODER, "train.epochs=3", "train.checkpoint_every=1", "train.eval_every=0")
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDKG_HOME", str(train_home))
        train("medkg", run, data_dir, overrides)
    torch.set_num_threads(threads)
    return run, overrides


def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_one(uninterrupted, data_dir, train_home,
                                                                                prepared, tmp_path):
    reference, overrides = uninterrupted
    steps = steps_per_epoch(prepared)
    resumed = tmp_path / "b"
    args = cli_args("medkg", resumed, data_dir, overrides)
    kill_at = steps + 3  # the third step of the second epoch, paused before its checkpoint: the second's is the last
    env = {**os.environ, "MEDKG_HOME": str(train_home), "PAUSE_AT": str(kill_at)}
    process = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while max((r["step"] for r in read_metrics(resumed / "metrics.csv") if r["split"] == "train"), default=0) < kill_at:
            assert process.poll() is None, f"run B stopped before the kill: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "run B did not reach the kill step in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    killed = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert (killed["epoch"], killed["batches"], killed["step"]) == (1, 2, steps + 2)  # mid-epoch
    assert not (resumed / "model").exists()
    assert max(r["step"] for r in read_metrics(resumed / "metrics.csv")) == kill_at  # a row the resumption must cut

    assert main(args) == 0  # the same command again
    assert_same_weights(weights(resumed), weights(reference))
    a, b = (read_metrics(run / "metrics.csv") for run in (reference, resumed))
    assert b == a  # the rows after the checkpoint cut, then logged once, with the same values


def test_ctrl_c_stops_cleanly_keeps_the_checkpoint_and_says_how_to_resume(uninterrupted, data_dir, train_home, tmp_path):
    _, overrides = uninterrupted
    run = tmp_path / "c"
    pause_at = 2  # steps from the second on pause 3 s in their metrics row, before the end-of-step check
    env = {**os.environ, "MEDKG_HOME": str(train_home), "PAUSE_AT": str(pause_at), "PAUSE_S": "3"}
    process = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *cli_args("medkg", run, data_dir, overrides)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while max((r["step"] for r in read_metrics(run / "metrics.csv") if r["split"] == "train"), default=0) < pause_at:
            assert process.poll() is None, f"the run stopped before Ctrl-C: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the run did not reach the step in time"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does in a terminal
        err = process.communicate(timeout=60)[1].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    step = torch.load(run / "checkpoint.pt", weights_only=True)["step"]
    assert step in (pause_at, pause_at + 1)  # the step Ctrl-C came in, saved when it ended (the next, on a slow machine)
    assert "stopping after this step, with a checkpoint (Ctrl-C again to stop at once)" in err
    assert err.rstrip().endswith(f"medkg: stopped at step {step}; the checkpoint is saved in {run / 'checkpoint.pt'}: "
                                 "run the same command again to resume")
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_damaged_checkpoints_and_changed_settings_are_refused(uninterrupted, data_dir, tmp_path, capsys):
    reference, overrides = uninterrupted
    run = tmp_path / "run"
    shutil.copytree(reference, run, ignore=shutil.ignore_patterns("model", "tensorboard"))
    checkpoint = run / "checkpoint.pt"
    before = checkpoint.read_bytes()

    assert main(cli_args("medkg", run, data_dir, [*overrides, "train.lr=0.01"])) == 2
    err = capsys.readouterr().err
    assert f"medkg: error: {run} holds another run (config differs in train.lr)" in err and "Traceback" not in err
    assert checkpoint.read_bytes() == before and not (run / "model").exists()  # left as it was

    checkpoint.write_bytes(before[: len(before) // 2])
    assert main(cli_args("medkg", run, data_dir, overrides)) == 2  # a ValueError, caught by the CLI
    err = capsys.readouterr().err
    assert f"medkg: error: {checkpoint} is damaged" in err and "Traceback" not in err


# 4. Config validation


def test_config_errors_name_the_key(tiny, open_kg_dir, data_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown key 'loss\.clpi'; did you mean 'loss\.clip'\?"):
        load_config(align.config_path("clip"), ["loss.clpi=0.5"])
    with pytest.raises(ValueError, match=r"train\.epochs: expected int, got 'abc'"):
        load_config(align.config_path("clip"), ["train.epochs=abc"])
    for name, overrides, message in (
            ("kad", ["loss.entity_region=3"], "go together"),  # a decoder without region maps
            ("medkg", ["model.decoder.region_gamma=0"], "go together"),  # region maps without their loss
            ("medkg", ["model.decoder.region_gamma=.inf"], "finite"),
            ("medkg", ["loss.entity_image=0", "loss.entity_text=0"], "decoder's present / absent scores stay untrained")):
        with pytest.raises(ValueError, match=re.escape(message)):
            load_config(align.config_path(name), overrides)
    for item, message in (("loss.clpi=0.5", "unknown key 'loss.clpi'; did you mean 'loss.clip'?"),
                          ("train.epochs=abc", "train.epochs: expected int, got 'abc'"),
                          ("loss.gloria_gamma=[1,2]", "loss.gloria_gamma: three values"),
                          ("train=3", "train: expected a mapping"),
                          ("loss.entity_region=3", "loss.entity_region needs model.decoder"),
                          ("trainepochs", "--set expects key=value")):
        assert main(cli_args("clip", tmp_path / "bad", data_dir, [item])) == 2, item
        err = capsys.readouterr().err
        assert err.startswith("medkg: error:") and message in err and "Traceback" not in err, (item, err)
    assert not (tmp_path / "bad").exists()


def test_overrides_set_nested_values_and_lists(tmp_path):
    config = load_config(align.config_path("clip"), [
        "model.image.hidden_sizes=[8, 16, 32]", "model.image.depths=[1,1,1]", "loss.gloria_gamma=[1, 2.5, 3]",
        "model.decoder.dim=32", "train.lr=3e-3", "train.epochs=2", "data.split=[0.5, 0.25, 0.25]", "data.kg=/x/y"])
    assert config.model.image.hidden_sizes == [8, 16, 32] and config.model.image.depths == [1, 1, 1]
    assert config.loss.gloria_gamma == [1.0, 2.5, 3.0] and all(isinstance(g, float) for g in config.loss.gloria_gamma)
    assert config.model.decoder is not None and config.model.decoder.dim == 32  # a section the file leaves out
    assert config.train.lr == 3e-3 and config.train.epochs == 2 and config.data.split == [0.5, 0.25, 0.25]
    shipped = yaml.safe_load(align.config_path("clip").read_text())
    assert config.data.kg == "/x/y" and config.model.image.image_size == shipped["model"]["image"]["image_size"]
    written = tmp_path / "own.yaml"
    written.write_text(yaml.safe_dump(config.as_dict()))
    assert load_config(written).as_dict() == config.as_dict()  # a saved config reads back the same


def test_missing_data_dir_and_nothing_to_resume(tiny, open_kg_dir, data_dir, tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no-data"
    assert main(cli_args("clip", tmp_path / "run", missing, [])) == 2
    err = capsys.readouterr().err
    assert f"medkg: error: data directory not found: {missing}" in err and "--data-dir" in err
    monkeypatch.setenv("MEDKG_DATA_DIR", str(missing))
    assert main(["train", "--config", "clip", "--out", str(tmp_path / "run"), "-q"]) == 2
    assert f"data directory not found: {missing}" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*cli_args("clip", empty, data_dir, settings(tiny, open_kg_dir)), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "medkg: error: nothing to resume" in err and str(empty / "checkpoint.pt") in err
    assert main(["train", "--config", "no-such-config", "--out", str(empty), "--data-dir", str(data_dir)]) == 2
    assert "no config file 'no-such-config'" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


# 5. Determinism


def test_the_seed_decides_the_weights(uninterrupted, data_dir, tmp_path):
    reference, overrides = uninterrupted
    train("medkg", tmp_path / "same", data_dir, [*overrides, "train.seed=0"])
    train("medkg", tmp_path / "other", data_dir, [*overrides, "train.seed=1"])
    a, same, other = weights(reference), weights(tmp_path / "same"), weights(tmp_path / "other")
    assert_same_weights(a, same)
    assert a.keys() == other.keys()
    for key in ("image_global.weight", "image/embedder.embedder.convolution.weight",
                next(k for k in a if k.startswith("decoder.") and k.endswith("weight"))):
        assert not torch.equal(a[key], other[key]), key
    assert sum(not torch.equal(a[k], other[k]) for k in a if k.endswith("weight")) > len(a) // 4


# 6. Bad input


def test_a_corrupt_image_and_an_empty_report_are_skipped(tiny, open_kg_dir, data_dir, tmp_path):
    nih = tmp_path / "nih"
    shutil.copytree(tiny.nih, nih)
    corrupt = sorted((nih / "images").iterdir())[5]
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    reports = tmp_path / "reports.csv"
    write_reports(reports, [(f"r{i:02d}", text) for i, text in enumerate(REPORTS)] + [("empty", "   ")])
    overrides = [f"data.image_root={nih}", f"data.reports={reports}", f"data.kg={open_kg_dir}", *SMALL,
                 "train.epochs=1", "train.eval_every=0"]
    problems = ProblemLog()
    summary = train("clip", tmp_path / "run", data_dir, overrides, problems)
    assert summary.steps > 0 and (tmp_path / "run" / "model").is_dir()
    assert "unreadable image" in summary.skipped and "empty report" in summary.skipped
    assert "skipped input:" in str(summary)
    assert any(corrupt.name in str(p) for p in problems.problems)
    assert any("'empty'" in str(p) for p in problems.problems)


# 7. Patient split


def test_images_and_reports_are_split_by_patient(prepared):
    patients = {side: {prepared.images[r].patient for r in rows.tolist()} for side, rows in prepared.image_rows.items()}
    assert not patients["train"] & patients["valid"] and not patients["train"] & patients["test"]
    assert not patients["valid"] & patients["test"]
    rows = sorted(r for side in prepared.image_rows.values() for r in side.tolist())
    assert rows == list(range(len(prepared.images)))  # every image on exactly one side
    several = {p for p in patients["train"] | patients["valid"] | patients["test"]
               if sum(image.patient == p for image in prepared.images) > 1}
    assert len(several) >= 5 and all(len(prepared.image_rows[s]) for s in ("train", "valid", "test"))
    report_rows = sorted(r for side in prepared.report_rows.values() for r in side.tolist())
    assert report_rows == list(range(len(prepared.reports)))
    for side, found in prepared.report_rows.items():  # a decoupled report is a patient of its own
        assert all(side_of(prepared.reports[r].id, (0.7, 0.1, 0.2), 0) == side for r in found.tolist())


def test_iu_style_reports_and_their_images_are_split_by_patient(data_dir, open_kg_dir, train_home, tmp_path):
    """IU X-ray with images: each report is one patient's study, its frontal and lateral images are its; the
    reports are real IU reports, the pixels borrowed from NIH images."""
    root = tmp_path / "iu"
    with tarfile.open(data_dir / "iu-xray" / "NLMCXR_reports.tgz") as archive:
        members = [m for m in archive.getmembers() if m.name.endswith(".xml")][:40]
        archive.extractall(root, members=members, filter="data")
    (root / "images").mkdir()
    pixels = sorted((data_dir / "nih-cxr14-bbox" / "images").iterdir())
    parsed = list(iu_xray.iter_reports(root / "ecgen-radiology", ProblemLog()))
    for i, image_id in enumerate(image for report in parsed for image in report.images):
        with Image.open(pixels[i % len(pixels)]) as image:
            image.convert("L").resize((32, 32)).save(root / "images" / f"{image_id}.png")
    config = load_config(align.config_path("clip"), [
        "data.images=iu-xray", f"data.image_root={root}", f"data.reports={root / 'ecgen-radiology'}",
        "data.pairing=paired", f"data.kg={open_kg_dir}", *SMALL])
    data = prepare_data(config, data_dir, train_home / "alignment", ProblemLog(), progress=False)
    assert len(data.images) > len(data.reports) > 20  # most reports have two views
    image_side = {int(r): side for side, rows in data.image_rows.items() for r in rows}
    report_side = {int(r): side for side, rows in data.report_rows.items() for r in rows}
    assert sorted(report_side) == list(range(len(data.reports)))
    sides_of: dict[str, set[str]] = {}
    for row, image in enumerate(data.images):
        if row in image_side:
            sides_of.setdefault(image.patient, set()).add(image_side[row])
    assert all(len(s) == 1 for s in sides_of.values())  # no patient on two sides
    paired = 0
    for row in data.image_rows["train"].tolist():
        report = int(data.report_of_image[row])
        assert report >= 0 and report_side[report] == "train"  # a training image's report trains too
        assert data.reports[report].id == data.images[row].patient
        paired += 1
    assert paired >= 10
    for side in ("valid", "test"):  # no report of a held-out patient trains
        held_out = {data.images[r].patient for r in data.image_rows[side].tolist()}
        assert not held_out & {data.reports[r].id for r in data.report_rows["train"].tolist()}


def test_a_paired_manifest_keeps_each_patients_studies_and_reports_on_one_side(tiny, data_dir, open_kg_dir, train_home,
                                                                                tmp_path):
    """A CSV manifest of 24 patients with two studies each, every study one image and its own report (by
    id in the reports CSV): both reports of a patient fall on the patient's side, not each on its own."""
    images = sorted((tiny.nih / "images").iterdir())
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "report_id", "patient", "study"])
        for i, image in enumerate(images):
            writer.writerow([str(image), f"r{i:02d}", f"patient{i // 2}", f"study{i}"])
    config = load_config(align.config_path("clip"), [
        "data.images=csv", f"data.image_root={manifest}", f"data.reports={tiny.reports}", "data.pairing=paired",
        f"data.kg={open_kg_dir}", *SMALL])
    data = prepare_data(config, data_dir, train_home / "alignment", ProblemLog(), progress=False)
    assert len(data.images) == 48 and len(data.reports) == len(REPORTS)
    side_of_report = {data.reports[r].id: side for side, rows in data.report_rows.items() for r in rows.tolist()}
    sides: dict[str, set[str]] = {}
    for side, rows in data.image_rows.items():
        for row in rows.tolist():
            image = data.images[row]
            report = data.reports[int(data.report_of_image[row])]
            assert report.id == f"r{images.index(image.path):02d}"  # the study's own report
            sides.setdefault(image.patient, set()).update({side, side_of_report[report.id]})
    assert len(sides) == 24 and all(len(s) == 1 for s in sides.values())
    assert len({next(iter(s)) for s in sides.values()}) == 3  # the 24 patients fill all three sides


# 4. Time budget


def test_plan_epochs_fits_the_budget_at_the_measured_pace():
    assert plan_epochs(10, 0.0, 3, 999.0, 10) == 10         # no budget: the config's epochs
    assert plan_epochs(10, 1.0, 0, 0.0, 10) == 10           # nothing measured yet
    assert plan_epochs(10, 1.0, 2, 20.0, 10) == 6           # 10 s an epoch, 40 s left: 4 more
    assert plan_epochs(10, 1.0, 2, 70.0, 10) == 2           # over budget: stop at what is done
    assert plan_epochs(10, 60.0, 2, 20.0, 4) == 10          # a bigger budget never goes past the config


def test_a_time_budget_trains_fewer_epochs_with_the_schedule_decayed_to_its_end(tiny, open_kg_dir, data_dir, prepared,
                                                                                 tmp_path):
    overrides = settings(tiny, open_kg_dir, "train.epochs=50", "train.eval_every=0", "train.max_minutes=0.0001")
    summary = train("clip", tmp_path / "run", data_dir, overrides)
    assert summary.epochs == 1 and summary.configured_epochs == 50
    assert "the time budget fitted 1 of the config's 50 epochs" in str(summary)
    lrs = [r["value"] for r in read_metrics(tmp_path / "run" / "metrics.csv") if r["name"] == "lr"]
    assert len(lrs) == steps_per_epoch(prepared)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["planned"] == 1 and state["seconds"] > 0
    assert all(group["lr"] == 0.0 for group in state["optimizer"]["param_groups"])  # the schedule re-planned to its end
    # a larger budget resumes the finished run and trains on
    more = settings(tiny, open_kg_dir, "train.epochs=2", "train.eval_every=0", "train.max_minutes=60")
    assert train("clip", tmp_path / "run", data_dir, more).epochs == 2
