"""What a corpus reader gives: images, reports, and how they belong together.

Every dataset is brought to the same three records so that training, evaluation and splitting never look at a
dataset's own layout. A study groups the images taken together (frontal + lateral) and is what a report
describes; the patient is what splits are made by, so that no patient's images are seen in training and test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kg.errors import MedkgError


class DatasetError(MedkgError, ValueError):
    """A dataset on disk that its reader cannot use at all: a missing file, a header without its columns, an unknown
    kind. The message names the path. (Single bad rows, images or reports are not errors: they go to the ProblemLog.)"""


@dataclass(frozen=True)
class ImageRecord:
    path: Path  # absolute path of the image file
    name: str  # the file name as the dataset lists it ("00000032_037.png"; CheXpert: its Path column; MIMIC: "<dicom_id>.jpg")
    patient: str  # splits are by patient
    study: str  # images of one study share a report; NIH: the image name (each image is its own study)
    view: str | None  # "PA", "AP", "LATERAL", "LL", ... as the dataset writes it, upper case; None when not known
    labels: dict[str, int] = field(default_factory=dict)  # label -> alignment.states value; a label not given is unknown


@dataclass(frozen=True)
class ReportRecord:
    id: str
    text: str
    patient: str | None
    study: str | None  # the study whose images it describes; None for a report without images


@dataclass
class Corpus:
    """Images and reports of one dataset. The lists are read-only once built: `report_of` indexes them on first use."""

    name: str  # "nih-cxr14", "chexpert", "mimic-cxr", "iu-xray", "csv"
    images: list[ImageRecord]
    reports: list[ReportRecord]
    paired: bool  # the reports belong to the images' studies (an image–report corpus), not only side by side
    label_names: list[str]  # the dataset's own spelling ("Effusion", "Infiltration", "Pleural_Thickening")
    _report_by_study: dict[str, ReportRecord] | None = field(default=None, init=False, repr=False, compare=False)

    def studies(self) -> dict[str, list[ImageRecord]]:
        """Images by study, in corpus order: a multi-view study (frontal + lateral) is one entry with several images."""
        studies: dict[str, list[ImageRecord]] = {}
        for image in self.images:
            studies.setdefault(image.study, []).append(image)
        return studies

    def report_of(self, study: str) -> ReportRecord | None:
        """The report of `study`, or None (an unpaired corpus, or a study whose report was missing or empty)."""
        if self._report_by_study is None:
            self._report_by_study = {report.study: report for report in self.reports if report.study is not None}
        return self._report_by_study.get(study)
