"""The notebooks run top to bottom, on small settings, in the virtualenv's own kernel (papermill injects the
values of each notebook's `parameters` cell; a cell error fails the test), and are committed without outputs.

Small settings: the open graph and its concept index come from the session's fixtures (tests/conftest.py), so
only notebook 01 builds a graph of its own; notebook 02 embeds the 180 concepts the IU reports' annotations relate
rather than all 55,000; notebook 03 trains one epoch of a 64 px three-stage network on the 613 NIH images and the
first REPORTS IU reports (the frozen text encoder reads every report once, the slowest step at full size), and
notebook 04 inspects its medkg run. The kernels inherit $MEDKG_HOME (caches shared between the notebooks) and one
torch thread from here.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from extract.reports import iter_reports
from kg.graph import KnowledgeGraph, read_graph
from kg.problems import ProblemLog
from kg.write import write_graph_rrf

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
REPORTS = 100
SMALL_TRAINING = ["model.image.image_size=64", "transform.image_size=64", "model.image.hidden_sizes=[8,16,32]",
                  "model.image.depths=[1,1,1]", "model.text.max_length=48", "train.threads=1"]


@pytest.fixture(scope="module")
def home(open_kg_dir, linked_home) -> Path:
    """$MEDKG_HOME of the kernels: the session's concept index of the open graph linked in where both extraction
    ($MEDKG_HOME/extract-index) and training ($MEDKG_HOME/alignment/extract-index) look for it."""
    return linked_home("notebook-home", extraction=True)


@pytest.fixture(scope="module", autouse=True)
def kernel_environment(home, data_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDKG_HOME", str(home))
        patch.setenv("MEDKG_DATA_DIR", str(data_dir))
        patch.delenv("MEDKG_GRAPH", raising=False)
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def notebook_01(tmp_path_factory):
    """Notebook 01 run once: it builds the open graph and loads it into $MEDKG_HOME's graph database, which
    notebook 02 stores its vectors in."""
    out = tmp_path_factory.mktemp("nb01")
    return execute("01_knowledge_graph", out / "executed.ipynb", OUT_DIR=str(out)), out


@pytest.fixture(scope="module")
def small_reports(data_dir, tmp_path_factory) -> Path:
    """The first REPORTS IU X-ray reports with text, as an id,text CSV (a report corpus `data.reports` reads)."""
    path = tmp_path_factory.mktemp("reports") / "iu-small.csv"
    found = iter_reports(data_dir / "iu-xray" / "NLMCXR_reports.tgz", ProblemLog())
    rows = [(r.id, r.text) for r in found if r.text.strip()][:REPORTS]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("id", "text"), *rows])
    return path


@pytest.fixture(scope="module")
def small_training(small_reports, open_kg_dir) -> list[str]:
    return [*SMALL_TRAINING, f"data.reports={small_reports}", f"data.kg={open_kg_dir}"]


def execute(name: str, output: Path, **parameters) -> nbformat.NotebookNode:
    """Run notebooks/<name>.ipynb in its own folder with `parameters` injected; returns the executed notebook."""
    papermill.execute_notebook(NOTEBOOKS / f"{name}.ipynb", output, parameters=parameters, kernel_name="python3",
                               cwd=NOTEBOOKS, progress_bar=False, log_output=False, start_timeout=180,
                               execution_timeout=600)  # a busy machine starts kernels slowly; a hung cell fails
    return nbformat.read(output, as_version=4)


def outputs(notebook: nbformat.NotebookNode, kind: str) -> list:
    """Every output of `kind` (text of streams and results, or image/png) of the executed code cells."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "text" and output.get("name") == "stdout":
                found.append(output["text"])
            elif kind == "text" and "text/plain" in output.get("data", {}):
                found.append(output["data"]["text/plain"])
            elif kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found


def test_notebook_01_builds_loads_and_queries_the_open_graph(notebook_01):
    notebook, out = notebook_01
    assert (out / "open-kg" / "MRCONSO.RRF").stat().st_size > 0
    text = "\n".join(outputs(notebook, "text"))
    assert "RADLEX:RID34539" in text and "pleural effusion" in text  # the fuzzy look-up of "pleural efusion"


def test_notebook_02_embeds_concepts(notebook_01, open_kg_dir, tmp_path):
    chest = tmp_path / "chest-kg"
    write_graph_rrf(chest_subgraph(read_graph(open_kg_dir, ProblemLog())), chest)
    out = tmp_path / "out"
    notebook = execute("02_knowledge_embedding", tmp_path / "executed.ipynb", KG_DIR=str(chest), OUT_DIR=str(out),
                       EPOCHS=1, STEPS=2)
    text = "\n".join(outputs(notebook, "text"))
    assert "test MRR" in text and "linked" in text
    assert (out / "nb-kge" / "concept_vectors.safetensors").is_file()


def chest_subgraph(kg: KnowledgeGraph) -> KnowledgeGraph:
    """The concepts the IU reports' annotations relate (about 180) and every relation among them."""
    relations = list(kg.relations())
    keep = {c for r in relations if r.source == "IUXRAY" for c in (r.head, r.tail)}
    small = KnowledgeGraph()
    for concept in kg.concepts():
        if concept.id in keep:
            small.add_concept(concept)
    for r in relations:
        if r.head in keep and r.tail in keep:
            small.add_relation(r)
    return small


@pytest.fixture(scope="module")
def notebook_03(small_training, tmp_path_factory):
    """Notebook 03 run once: its medkg run is the trained run notebook 04 inspects."""
    out = tmp_path_factory.mktemp("nb03")
    notebook = execute("03_train_a_knowledge_guided_encoder", out / "executed.ipynb", OUT_DIR=str(out / "runs"),
                       EPOCHS=1, OVERRIDES=small_training, RESAMPLES=50)
    return notebook, out / "runs"


def test_notebook_03_trains_medkg_and_clip_and_compares_them(notebook_03):
    notebook, out = notebook_03
    for name in ("medkg", "clip"):
        with open(out / name / "metrics.csv", newline="") as f:
            losses = [float(r["value"]) for r in csv.DictReader(f) if r["split"] == "train" and r["name"] == "loss"]
        assert losses and all(v == v for v in losses)  # logged, and no NaN
        metrics = json.loads((out / name / "evaluation" / "metrics.json").read_text())
        zero_shot = metrics["zero_shot"]
        assert 0 < zero_shot["mean_auc"] < 1 and len(zero_shot["auc"]) >= 10
        assert all(low <= zero_shot["auc"][label] <= high for label, (low, high) in zero_shot["auc_ci"].items())
        assert metrics["details"]["split"] == "test"
    assert len(outputs(notebook, "image/png")) == 2  # the loss curves and the AUC comparison
    table = "\n".join(outputs(notebook, "text/markdown"))
    assert "| Effusion |" in table and "mean, clip" in table


def test_notebook_04_draws_the_attention_of_a_trained_run(notebook_03, tmp_path):
    """On notebook 03's medkg run (training one when RUN_DIR holds none is the same `align.train` call as 03's)."""
    run = notebook_03[1] / "medkg"
    notebook = execute("04_inspect_entity_attention", tmp_path / "executed.ipynb", RUN_DIR=str(run), IMAGES=2)
    manifest = json.loads((run / "explain" / "explain.json").read_text())
    assert len(manifest["images"]) == 2
    overlays = [run / "explain" / e["overlay"] for image in manifest["images"] for e in image["entities"]]
    assert overlays and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in overlays)
    words = json.loads((run / "explain" / "report" / "explain.json").read_text())["images"][0]["words"]
    assert {"effusion", "pneumothorax"} <= {w["text"].lower() for w in words}
    assert len(outputs(notebook, "image/png")) == 4  # one overlay as written, the boxes, the words, the pointing game
    assert "pointing game" in "\n".join(outputs(notebook, "text"))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs_and_a_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), f"{path.name} holds outputs"
    assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: the first code cell is not tagged parameters"


def test_the_kernel_is_this_interpreter(tmp_path):
    """papermill's "python3" kernel resolves to the python running the tests (jupyter_client replaces a kernelspec's
    `python` by sys.executable), so the notebooks import this checkout's packages."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    source = tmp_path / "which.ipynb"
    nbformat.write(notebook, source)
    papermill.execute_notebook(source, tmp_path / "out.ipynb", kernel_name="python3", progress_bar=False)
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"].strip()
    assert printed == sys.executable
