"""`medkg demo`: the stage machinery (caching, --from, failures) on stand-in stages, then the real main job end to
end on the shared data at smoke size (`--quick`), its report page rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kg.errors import MissingInputError
from kg.problems import ProblemLog
from medkg.cli import main
from medkg.demo.pipeline import STAGES_FILE, Stage, StageFailed, run_stages
from medkg.demo.stages import STAGE_NAMES

from .test_explain import chromium  # noqa: F401  (the fixture: Debian's chromium, installed by `make test`)

ROOT = Path(__file__).resolve().parents[1]


# 1. Stages, on stand-ins


def stand_ins(tmp_path: Path, calls: list[str], fail: str | None = None) -> list[Stage]:
    source = tmp_path / "source.txt"
    if not source.exists():
        source.write_text("v1")

    def work(name: str):
        def run(problems: ProblemLog) -> dict:
            calls.append(name)
            if name == fail:
                raise MissingInputError(f"{name} needs something that is not there")
            if name == "b":
                problems.report("input.csv", 7, "bad row", "not a number")
            (tmp_path / f"{name}.out").write_text(name)
            return {"made": name}
        return run

    return [Stage(n, f"doing {n}", 1, work(n), {"n": n}, [source] if n == "a" else [], [tmp_path / f"{n}.out"])
            for n in ("a", "b", "c")]


def test_stages_are_cached_rerun_from_a_stage_and_after_an_input_changes(tmp_path):
    calls, lines = [], []
    records = run_stages(stand_ins(tmp_path, calls), tmp_path, say=lines.append)
    assert calls == ["a", "b", "c"] and set(records) == {"a", "b", "c"}
    assert records["b"]["summary"]["problems"] == "1 problems: 1 bad row"
    assert (tmp_path / "problems" / "b.txt").read_text() == "input.csv:7: bad row: not a number\n"
    assert any(re.match(r"medkg demo \[2/3\] b: doing b \(elapsed \d+:\d\d, about \d+:\d\d left\)", line) for line in lines)

    calls.clear()
    run_stages(stand_ins(tmp_path, calls), tmp_path, say=lines.append)
    assert calls == []  # nothing changed: every stage skipped
    run_stages(stand_ins(tmp_path, calls), tmp_path, start_from="b", say=lines.append)
    assert calls == ["b", "c"]
    calls.clear()
    (tmp_path / "source.txt").write_text("v2, longer")  # stage a's input changed: a and everything after it
    run_stages(stand_ins(tmp_path, calls), tmp_path, say=lines.append)
    assert calls == ["a", "b", "c"]
    calls.clear()
    (tmp_path / "c.out").unlink()  # an output gone: that stage runs again
    run_stages(stand_ins(tmp_path, calls), tmp_path, say=lines.append)
    assert calls == ["c"]
    with pytest.raises(Exception, match="unknown stage 'x'; the stages are a, b, c"):
        run_stages(stand_ins(tmp_path, calls), tmp_path, start_from="x", say=lines.append)


def test_a_failing_stage_is_named_and_the_stages_before_it_are_kept(tmp_path):
    calls: list[str] = []
    run_stages(stand_ins(tmp_path, calls), tmp_path, say=lambda line: None)
    calls.clear()
    with pytest.raises(StageFailed, match=r"stage 'b' failed: b needs something that is not there\. The stages before "
                                          r"it are kept in .*; rerun with `--from b`"):
        run_stages(stand_ins(tmp_path, calls, fail="b"), tmp_path, start_from="b", say=lambda line: None)
    records = json.loads((tmp_path / STAGES_FILE).read_text())
    assert "key" in records["a"] and "key" not in records["b"] and (tmp_path / "a.out").exists()
    calls.clear()
    run_stages(stand_ins(tmp_path, calls), tmp_path, say=lambda line: None)  # fixed: resumes at the failed stage
    assert calls == ["b", "c"]


def test_a_stage_resumes_its_runs_only_when_resuming_its_own_interrupted_attempt(tmp_path):
    """A finished training run resumed would come back unchanged: when a stage runs anew (an input changed, --from),
    its runs start from scratch; when it resumes its own interrupted attempt, they resume."""
    run = tmp_path / "run"
    seen: list[bool] = []
    stop = {"now": False}

    def train(problems: ProblemLog) -> dict:
        seen.append((run / "checkpoint").exists())  # what the trainer would resume from
        run.mkdir(exist_ok=True)
        (run / "checkpoint").write_text("epoch")
        if stop["now"]:
            raise KeyboardInterrupt
        (tmp_path / "model").write_text("done")
        return {}

    source = tmp_path / "source.txt"
    source.write_text("v1")
    stages = lambda: [Stage("train", "training", 1, train, {}, [source], [tmp_path / "model"], runs=[run])]  # noqa: E731
    run_stages(stages(), tmp_path, say=lambda line: None)
    run_stages(stages(), tmp_path, start_from="train", say=lambda line: None)  # rerun asked: from scratch
    source.write_text("v2, longer")
    stop["now"] = True
    with pytest.raises(KeyboardInterrupt):  # the input changed: from scratch, then stopped midway
        run_stages(stages(), tmp_path, say=lambda line: None)
    stop["now"] = False
    run_stages(stages(), tmp_path, say=lambda line: None)  # the same attempt again: it resumes
    assert seen == [False, False, False, True]


def test_a_missing_data_directory_says_what_to_provide(tmp_path, capsys):
    assert main(["demo", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "data directory not found" in err and "NLMCXR_reports.tgz" in err and "BBox_List_2017.csv" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    (tmp_path / "partial").mkdir()
    assert main(["demo", "--data-dir", str(tmp_path / "partial"), "--out", str(tmp_path / "out")]) == 2
    assert "lacks iu-xray/NLMCXR_reports.tgz" in capsys.readouterr().err


# 2. The main job at smoke size


@pytest.fixture(scope="module")
def demo(data_dir, tmp_path_factory) -> tuple[Path, dict, str]:
    base = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "MEDKG_HOME": str(base / "home"), "MEDKG_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "medkg", "demo", "--quick", "--budget-minutes", "0.5", "--out", str(base / "out"),
               "--graph", f"embedded://{base / 'graph'}"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    return base / "out", json.loads((base / "out" / STAGES_FILE).read_text()), done.stderr + again.stderr


def test_the_demo_runs_every_stage_and_a_rerun_skips_them(demo):
    out, records, log = demo
    assert list(records) == list(STAGE_NAMES)
    for number, name in enumerate(STAGE_NAMES, 1):
        assert re.search(rf"medkg demo \[{number}/6\] {name}: .*about \d+:\d\d left", log), name
        assert f"medkg demo [{number}/6] {name}: up to date, skipped" in log, name
    graph, extract, train = records["graph"]["summary"], records["extract"]["summary"], records["train"]["summary"]
    assert graph["concepts"] > 50_000 and graph["counts"]["IS_A"] > 40_000
    assert extract["reports"] == 3955 and extract["linked"] > 10_000 and extract["assertions"]["absent"] > 1000
    assert set(extract["label_prevalence"]) >= {"Effusion", "Cardiomegaly"}
    assert records["embed"]["summary"]["vectors"] == graph["concepts"]
    assert all(train[m]["steps"] >= 1 for m in ("medkg", "clip"))
    for model in ("medkg", "clip"):
        metrics = json.loads((out / "eval" / model / "metrics.json").read_text())
        assert 0 < metrics["zero_shot"]["mean_auc"] < 1 and metrics["localization"]["mean_pointing_game"] >= 0
        assert set(metrics["probe"]) == {"1%", "10%", "100%"}
    explained = records["evaluate"]["summary"]["explain"]
    assert (out / explained["index"]).exists() and len(explained["images"]) == 2


def test_the_report_page_renders_with_its_figures_drawn(demo, chromium, tmp_path):  # noqa: F811
    out, _, _ = demo
    page = out / "index.html"
    text = page.read_text()
    for section in ("1. The knowledge graph", "2. Entities in the reports", "3. Knowledge embedding",
                    "4. Knowledge-guided alignment", "5. Evaluation on held-out patients", "Open the explain viewer"):
        assert section in text
    shared = {model: json.loads((out / "eval" / model / "metrics.json").read_text())["localization"]["shared_peaks"]
              for model in ("medkg", "clip")}
    assert "Maps of two findings on one image that peak at the same region: " in text
    assert f"medkg (knowledge-guided) {shared['medkg']:.0%}" in text and f"CLIP baseline {shared['clip']:.0%}" in text
    sources = re.findall(r"<img[^>]* src='([^']+)'", text)
    assert {"figures/graph.png", "figures/extraction.png", "figures/training.png", "figures/zero_shot.png",
            "figures/pointing.png"} <= set(sources) and len(sources) >= 7  # five plots and the overlays
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", profile,
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    drawn = re.search(r'data-figures="(\d+)/(\d+)"', dom)
    assert drawn and drawn.group(1) == drawn.group(2) == str(len(sources)), drawn and drawn.group(0)
    shot = tmp_path / "page.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", profile,
                    "--window-size=1200,6000", "--virtual-time-budget=5000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)   # medkg's bars and curves
    blue = (pixels[..., 2] > 140) & (pixels[..., 0] < 90)                          # CLIP's
    assert red.sum() > 2000 and blue.sum() > 2000


def test_the_demo_points_extraction_at_its_own_data_directory(tmp_path, monkeypatch):
    """Extraction reads its lexicons from $MEDKG_DATA_DIR (else shared/data beside the checkout): during the demo that
    is the --data-dir given, and afterwards the environment is as it was (a fresh clone elsewhere found no lexicons)."""
    from kg.paths import default_data_dir
    from medkg.demo import _data_dir_env

    monkeypatch.delenv("MEDKG_DATA_DIR", raising=False)
    with _data_dir_env(tmp_path):
        assert default_data_dir() == tmp_path.resolve()
    assert "MEDKG_DATA_DIR" not in os.environ
    monkeypatch.setenv("MEDKG_DATA_DIR", "/elsewhere")
    with _data_dir_env(tmp_path):
        assert default_data_dir() == tmp_path.resolve()
    assert os.environ["MEDKG_DATA_DIR"] == "/elsewhere"
