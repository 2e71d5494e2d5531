"""ChestX-ray14 labels from the IU X-ray manual MeSH annotations, and P/R/F1 scoring against them.

The IU X-ray reports (`NLMCXR_reports.tgz`) come with manual annotations (`<MeSH><major>`) such as
`Pulmonary Atelectasis/base/left/mild`. The first part of an annotation names the finding.
`MESH_TO_LABEL` maps that first part, lower-cased and with its spaces collapsed, to one of the 14
ChestX-ray14 labels. Pleural_Thickening has no MeSH heading of its own: it is an annotation whose
first part is `thickening` and one of whose later parts contains `pleura` (`Thickening/pleura/right`).

Reports annotated only `No Indexing` were never annotated. `mesh_labels` leaves them out
(`skip_unindexed=True`), so that predictions on them count neither way. A report annotated
`normal`, or only with findings outside the 14, has an empty set: each label predicted on it is a
false positive.

    from tests.iu_mesh import mesh_labels, score
    truth = mesh_labels(Path("../shared/data/iu-xray/NLMCXR_reports.tgz"))
    scores = score(truth, {"CXR1": {"Cardiomegaly"}, ...})
    scores.micro.f1, scores.per_label["Effusion"].recall
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kg.problems import ProblemLog
from kg.sources import iu_xray

__all__ = ["LABELS", "MESH_TO_LABEL", "Score", "Scores", "annotation_labels", "mesh_labels", "score"]

# The 14 ChestX-ray14 findings, in the order of extract/data/label_sets/chestxray14.json.
LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip

MESH_TO_LABEL: dict[str, str] = {
    "pulmonary atelectasis": "Atelectasis",
    "atelectasis": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "pleural effusion": "Effusion",
    "infiltrate": "Infiltration",
    "mass": "Mass",
    "nodule": "Nodule",
    "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax",
    "consolidation": "Consolidation",
    "pulmonary edema": "Edema",
    "emphysema": "Emphysema",
    "pulmonary emphysema": "Emphysema",
    "pulmonary fibrosis": "Fibrosis",
    "fibrosis": "Fibrosis",
    "hernia, hiatal": "Hernia",
    "hernia, diaphragmatic": "Hernia",
}
UNINDEXED = "no indexing"


def _parts(annotation: str) -> list[str]:
    return [" ".join(part.lower().split()) for part in annotation.split("/")]


def annotation_labels(annotations: Iterable[str]) -> set[str]:
    """The ChestX-ray14 labels of one report's `<major>` annotations."""
    labels: set[str] = set()
    for annotation in annotations:
        parts = _parts(annotation)
        if parts[0] in MESH_TO_LABEL:
            labels.add(MESH_TO_LABEL[parts[0]])
        elif parts[0] == "thickening" and any("pleura" in part for part in parts[1:]):
            labels.add("Pleural_Thickening")
    return labels


def mesh_labels(path: Path, skip_unindexed: bool = True, problems: ProblemLog | None = None) -> dict[str, set[str]]:
    """report id ("CXR1") -> the set of ChestX-ray14 labels its manual annotations state."""
    truth: dict[str, set[str]] = {}
    for report in iu_xray.iter_reports(Path(path), problems if problems is not None else ProblemLog()):
        firsts = {_parts(a)[0] for a in report.mesh_major}
        if skip_unindexed and firsts <= {UNINDEXED}:
            continue
        truth[report.id] = annotation_labels(report.mesh_major)
    return truth


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0


class Scores(NamedTuple):
    per_label: dict[str, Score]
    micro: Score


def score(truth: Mapping[str, set[str]], predicted: Mapping[str, Iterable[str]], labels: Iterable[str] = LABELS) -> Scores:
    """Per-label and micro-averaged precision/recall/F1 of positive findings over the reports of `truth`.

    A report missing from `predicted` predicts nothing; reports only in `predicted` are ignored.
    """
    counts = {label: [0, 0, 0] for label in labels}
    for report_id, true in truth.items():
        guessed = set(predicted.get(report_id, ()))
        for label, c in counts.items():
            if label in guessed:
                c[0 if label in true else 1] += 1
            elif label in true:
                c[2] += 1
    per_label = {label: Score(*c) for label, c in counts.items()}
    micro = Score(*(sum(s[i] for s in counts.values()) for i in range(3)))
    return Scores(per_label, micro)
