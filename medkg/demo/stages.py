"""The main job as six stages, each a call into `medkg.api` whose outputs the next one reads:

1. graph: build the open radiology graph (RadLex, MeSH, Disease Ontology, CheXpert phrases, relations mined from
   IU X-ray) and load it into the graph database;
2. extract: link the IU X-ray reports' mentions to graph concepts (present / absent / uncertain), store them in
   the graph, and label the reports with the ChestX-ray14 findings;
3. embed: fine-tune the knowledge encoder on the graph, train the text predictor and RotatE over its features,
   rank held-out edges with both and the graph's structure, export the text predictor's concept vectors;
4. train: the knowledge-guided aligner (configs/medkg.yaml, fed the stages above) and the CLIP baseline
   (configs/clip.yaml) on NIH images and IU reports, decoupled, split by patient, within the time budget;
5. evaluate: zero-shot AUC, retrieval, linear probe and pointing game on the held-out patients, and the
   entity attention of a few held-out boxed images through `medkg explain`;
6. report: `OUT/index.html`.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kg.errors import MissingInputError
from kg.problems import ProblemLog

from .pipeline import Stage

STAGE_NAMES = ("graph", "extract", "embed", "train", "evaluate", "report")
IU_REPORTS = "iu-xray/NLMCXR_reports.tgz"
NIH = "nih-cxr14-bbox"
REQUIRED = (IU_REPORTS, f"{NIH}/Data_Entry_2017.csv", f"{NIH}/BBox_List_2017.csv", f"{NIH}/images",
            "vocab/radlex/Radlex.csv", "vocab/mesh/2017MeshTree.txt", "vocab/doid/doid-2016-09-01.obo",
            "vocab/umls/SemGroups.txt", "lexicons")
WHERE_FROM = ("the IU X-ray reports (NLM OpenI, NLMCXR_reports.tgz), NIH ChestX-ray14 images with "
              "Data_Entry_2017.csv and BBox_List_2017.csv (NIH Clinical Center), RadLex (RSNA), MeSH (NLM), the Disease "
              "Ontology (OBO) and the negation lexicons (NegEx, NegBio, medspaCy, CheXpert labeler); the README's "
              "'Data' section says where each comes from")
MODELS = ("medkg", "clip")
BUDGET_SHARE = {"medkg": 0.6, "clip": 0.4}  # of the training budget: medkg's steps cost about 1.5x CLIP's


@dataclass(frozen=True)
class Sizes:
    """How much work each stage does. `full` is the demo; `quick` a smoke run of every stage (tests, a first look)."""
    knowledge_steps: int
    kge_models: tuple[str, ...]       # the first is exported; with the others, its ensemble ranks test
    kge_epochs: int | None            # None: each model's preset (text 8, rotate 40)
    kge_text_features: bool
    aligner: tuple[str, ...]          # --set overrides for both aligners
    resamples: int
    explain_images: int
    kge_evaluate: bool = True         # rank every held-out edge against all 55k concepts (minutes on 2 cores)
    report_sample: int = 0            # > 0: the aligners read only the first N IU reports (0: all 3,955)


FULL = Sizes(knowledge_steps=150, kge_models=("text", "rotate"), kge_epochs=None, kge_text_features=True, aligner=(), resamples=1000, explain_images=4)
QUICK = Sizes(knowledge_steps=2, kge_models=("rotate",), kge_epochs=1, kge_text_features=False, resamples=50, explain_images=2,
              kge_evaluate=False, report_sample=300,
              aligner=("transform.image_size=64", "model.image.image_size=64", "model.image.hidden_sizes=[8,16,32,64]",
                       "train.epochs=1", "train.batch_size=64", "train.eval_every=0", "data.extra_entities=4"))


@dataclass
class DemoSettings:
    data_dir: Path
    out: Path
    graph: str | None = None          # None: the default graph ($MEDKG_GRAPH, else the embedded one in $MEDKG_HOME)
    budget_minutes: float = 15.0      # for training both aligners
    quick: bool = False
    device: str | None = None         # None: CUDA when present
    workers: int = 2

    @property
    def sizes(self) -> Sizes:
        return QUICK if self.quick else FULL


def check_data(data_dir: Path) -> None:
    """Every input the demo reads, or one message naming what is missing and where it comes from."""
    if not data_dir.is_dir():
        raise MissingInputError(f"data directory not found: {data_dir}. Give --data-dir DIR (or set MEDKG_DATA_DIR) "
                                f"pointing at a folder holding {', '.join(REQUIRED)}: {WHERE_FROM}")
    missing = [name for name in REQUIRED if not (data_dir / name).exists()]
    if missing:
        raise MissingInputError(f"{data_dir} lacks {', '.join(missing)}; the demo needs {WHERE_FROM}")


def build_stages(s: DemoSettings) -> list[Stage]:
    from graphdb.uri import default_graph_uri, redacted

    d, out, sizes = s.data_dir, s.out, s.sizes
    graph = s.graph or default_graph_uri()
    kg_dir, mentions, labels = out / "open-kg", out / "iu-mentions.jsonl", out / "iu-chestxray14.csv"
    encoder, vectors = out / "knowledge-encoder", out / "concept-vectors"
    kge_runs = {name: out / ("kge" if i == 0 else f"kge-{name}") for i, name in enumerate(sizes.kge_models)}
    kge = kge_runs[sizes.kge_models[0]]
    runs = {name: out / "runs" / name for name in MODELS}
    evals = {name: out / "eval" / name for name in MODELS}
    explained = out / "explain"
    common = {"quick": s.quick}
    sources = [d / p for p in (IU_REPORTS, "vocab", "lexicons/chexpert-labeler")]

    def graph_stage(problems: ProblemLog) -> dict[str, Any]:
        from ..api import kg as api

        built = api.build_graph(kg_dir, "open", d, problems=problems, progress=False)
        loaded = api.load_graph(kg_dir, graph, problems=ProblemLog(max_logged=0), progress=False, data_dir=d)
        return {"concepts": built.concepts, "relations": built.relations, "sources": built.source_counts,
                "counts": api.counts(graph), "load": {t: [x.added, x.updated, x.unchanged] for t, x in loaded.tables.items()},
                "graph": redacted(graph)}

    def extract_stage(problems: ProblemLog) -> dict[str, Any]:
        from ..api import extract as api

        run = api.run(d / IU_REPORTS, kg_dir, mentions, workers=s.workers, link=True, graph=graph, problems=problems,
                      progress=False)
        count = api.labels(d / IU_REPORTS, kg_dir, "chestxray14", labels, workers=s.workers, problems=ProblemLog(max_logged=0),
                           progress=False)  # the same reports: their problems are counted once, above
        return {"reports": run.reports, "mentions": run.mentions, "assertions": dict(run.assertions),
                "linked": run.linked, "labelled": count, "top_present": _top_present(mentions),
                "label_prevalence": _prevalence(labels)}

    def embed_stage(problems: ProblemLog) -> dict[str, Any]:
        from ..api import embed as api

        # The encoder holds out the edges of the KGE run's split (both default: 10% valid, 10% test, seed 0)
        knowledge = api.train_knowledge(encoder, kg=kg_dir, progress=False, problems=problems, steps=sizes.knowledge_steps,
                                        batch_size=32, lr=1e-4)
        # The text predictor and RotatE over the encoder's features, ranked with the graph's structure scores:
        # the best measured on the open graph (docs/BENCHMARKS.md); the text predictor's vectors are exported
        settings = {"kg": kg_dir, "text_features": sizes.kge_text_features, "progress": False, "problems": problems,
                    "text_encoder": encoder if sizes.kge_text_features else None, "epochs": sizes.kge_epochs}
        first, *others = sizes.kge_models
        trained = api.train(kge, model=first, structure=sizes.kge_evaluate and not others, **settings)
        epochs = {first: trained.epochs} | {name: api.train(kge_runs[name], model=name, structure=False, **settings).epochs
                                            for name in others}
        fit = None
        if sizes.kge_evaluate:  # with other models, their ensemble replaces the one `train` would have fitted
            fit = api.combine(kge, [kge_runs[name] for name in others], progress=False) if others else trained.ensemble
        metrics = api.evaluate(kge, progress=False) if sizes.kge_evaluate else {}
        exported = api.export(kge, vectors, graph=graph)  # stored on the concepts too: `medkg kg similar` answers
        structure = ({"weights": fit.weights, "valid_mrr": fit.mrr, "model_valid_mrr": fit.alone[trained.model]}
                     if fit else None)
        return {"knowledge_steps": knowledge.steps, "knowledge_loss": knowledge.loss, "kge_model": trained.model,
                "structure": structure, "kge_epochs": epochs, "triples": trained.triples, "test": _overall(metrics),
                "vectors": exported.concepts, "dim": exported.dim, "stored": exported.stored}

    def train_stage(problems: ProblemLog) -> dict[str, Any]:
        from ..api import align

        result = {}
        sample = [f"data.reports={_report_sample(d / IU_REPORTS, out / 'iu-reports-sample.csv', sizes.report_sample)}"] \
            if sizes.report_sample else []
        for name in MODELS:
            minutes = s.budget_minutes * BUDGET_SHARE[name]
            summary = align.train(name, runs[name], d, _aligner_overrides(name, s, kg_dir, vectors, encoder) + sample
                                  + [f"train.max_minutes={minutes:g}"], progress=False, problems=problems)
            result[name] = {"epochs": summary.epochs, "configured_epochs": summary.configured_epochs,
                            "steps": summary.steps, "seconds": round(summary.seconds, 1), "budget_minutes": minutes,
                            "valid": summary.valid}
        return result

    def evaluate_stage(problems: ProblemLog) -> dict[str, Any]:
        from ..api import evaluate as api
        from ..api import explain

        result: dict[str, Any] = {}
        for name in MODELS:
            metrics = api.evaluate(runs[name], "nih-cxr14", d / NIH, evals[name], data_dir=d, device=s.device,
                                   probe=True, resamples=sizes.resamples, progress=False, problems=problems)
            result[name] = {k: v for k, v in metrics.items() if k != "details"}
        images, entities = _boxed_held_out(evals["medkg"], d / NIH, sizes.explain_images)
        if images:
            made = explain.explain(images, runs["medkg"], explained, entities=entities, report=_report_for(entities),
                                   device=s.device, data_dir=d)
            result["explain"] = {"index": str(made.index.relative_to(out)), "images": [p.name for p in images],
                                 "entities": entities}
        return result

    def report_stage(problems: ProblemLog) -> dict[str, Any]:
        from .report import write_report

        page = write_report(out, _machine())
        return {"page": str(page)}

    trained_inputs = [kg_dir, vectors, encoder]
    return [
        Stage("graph", "building the open radiology graph and loading it into the graph database", 60, graph_stage,
              {**common, "graph": redacted(graph)}, sources, [kg_dir]),
        Stage("extract", "linking the IU X-ray reports' findings to the graph", 40, extract_stage, common,
              [d / IU_REPORTS, d / "lexicons", kg_dir], [mentions, labels]),
        Stage("embed", "training the knowledge encoder and the concept embeddings", 30 if s.quick else 780, embed_stage,
              asdict(sizes), [kg_dir], [encoder, *kge_runs.values(), vectors], runs=[encoder, *kge_runs.values()]),
        Stage("train", f"training the knowledge-guided aligner and the CLIP baseline ({s.budget_minutes:g} min budget)",
              s.budget_minutes * 60 + 60, train_stage, {**asdict(sizes), "budget": s.budget_minutes},
              [d / NIH / "Data_Entry_2017.csv", *trained_inputs], [runs[m] / "model" for m in MODELS], paced=False,
              runs=list(runs.values())),
        Stage("evaluate", "scoring both on the held-out patients and drawing entity attention", 40 if s.quick else 150,
              evaluate_stage, {**asdict(sizes), "device": s.device}, [d / NIH / "BBox_List_2017.csv"],
              [evals[m] / "metrics.json" for m in MODELS]),
        Stage("report", "writing the report page", 10, report_stage, {}, [], [out / "index.html"]),
    ]


def _aligner_overrides(name: str, s: DemoSettings, kg_dir: Path, vectors: Path, encoder: Path) -> list[str]:
    """The demo's own graph feeds both aligners (the same split, the same entities; each extracts the reports'
    mentions with their text into its cache); medkg also takes the concept vectors (its soft targets and
    prototypes) and the fine-tuned knowledge encoder (its entity queries)."""
    items = [f"data.kg={kg_dir.resolve()}", *s.sizes.aligner]
    if name == "medkg":
        items += [f"data.concept_vectors={vectors.resolve()}", f"data.knowledge_encoder={encoder.resolve()}"]
    if s.device:
        items.append(f"train.device={s.device}")
    return items


def _report_sample(archive: Path, out: Path, count: int) -> Path:
    """The first `count` reports with text, as an `id,text` CSV (a report corpus the aligners read)."""
    import csv

    from extract.reports import iter_reports
    from kg.atomic import atomic_open

    rows = []
    for report in iter_reports(archive, ProblemLog(max_logged=0)):
        if report.text.strip():
            rows.append((report.id, report.text))
        if len(rows) == count:
            break
    with atomic_open(out, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("id", "text"), *rows])
    return out.resolve()


def _top_present(mentions: Path, limit: int = 12) -> list[list[Any]]:
    """The findings (concepts of the Disorders semantic group) most often asserted present outside INDICATION
    and HISTORY: [name, reports]."""
    from kg.semgroups import read_semgroups, semgroups_path

    disorders = {tui for tui, t in read_semgroups(semgroups_path()).items() if t.group == "DISO"}
    counts: Counter[str] = Counter()
    with mentions.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            names = {m["name"] for m in record.get("mentions", [])
                     if m.get("assertion") == "present" and m.get("section") not in ("INDICATION", "HISTORY")
                     and disorders.intersection(m.get("semantic_types", []))}
            counts.update(names)
    return [[name, n] for name, n in counts.most_common(limit)]


def _prevalence(labels: Path) -> dict[str, list[int]]:
    """{label: [present, absent, uncertain]} over the labelled reports."""
    import csv

    with labels.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in (rows[0].keys() if rows else []) if c != "id"]
    return {c: [sum(r[c] == v for r in rows) for v in ("1", "0", "-1")] for c in columns}


def _overall(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _boxed_held_out(evaluation: Path, root: Path, count: int) -> tuple[list[Path], list[str]]:
    """`count` held-out images with expert boxes (from the evaluation's attention peaks: test patients only), one
    per finding where possible, and the findings they show."""
    import csv

    peaks = evaluation / "attention_peaks.csv"
    if not peaks.exists():
        return [], []
    with peaks.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen: dict[str, str] = {}
    for row in rows:  # one image per finding, first come
        if row["label"] not in chosen.values() and row["image"] not in chosen and len(chosen) < count:
            chosen[row["image"]] = row["label"]
    return [root / "images" / name for name in chosen], sorted(set(chosen.values()))


def _report_for(entities: list[str]) -> str:
    """A short report naming the shown findings, so the viewer has words to shade: written here, not a patient's."""
    phrases = {"Effusion": "a small left pleural effusion", "Cardiomegaly": "the heart is enlarged",
               "Atelectasis": "bibasilar atelectasis", "Pneumothorax": "a right apical pneumothorax",
               "Mass": "a mass in the right upper lobe", "Nodule": "a nodule in the left lung",
               "Infiltration": "patchy infiltrate in the right lower lobe", "Pneumonia": "consolidation suggesting pneumonia"}
    named = [phrases[e] for e in entities if e in phrases] or ["no acute cardiopulmonary abnormality"]
    return "FINDINGS: " + ". ".join(n[0].upper() + n[1:] for n in named) + ". IMPRESSION: " + named[0] + "."


def _machine() -> dict[str, Any]:
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu, "date": time.strftime("%Y-%m-%d %H:%M")}
