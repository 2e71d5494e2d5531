"""One reader per published dataset layout, each giving a `Corpus`; `read_corpus(kind, root, problems)` picks one.

A file the layout needs that is not there raises DatasetError naming its path. Everything smaller is reported to the
ProblemLog with its file and line and skipped, keeping what is good: a bad CSV row, a row whose image file is
missing, a report without text (its study's images stay, `report_of` gives None), a label value that is not
1 / 0 / -1 / blank (that label stays unknown, the rest of the row is kept). CSVs are streamed with the csv module,
a UTF-8 BOM dropped, `.csv.gz` read as is. Image files are checked to exist, not decoded: decoding errors are found
(and reported) by `ImageCache.load`.

Label values, everywhere: 1 -> PRESENT, 0 -> ABSENT, -1 -> UNCERTAIN, blank -> unknown (left out of the dict).
A corpus is `paired` when some report's study has images.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from alignment.data.records import Corpus, DatasetError, ImageRecord, ReportRecord
from alignment.states import ABSENT, PRESENT, UNCERTAIN
from extract.reports import iter_reports, iu_report, read_txt_report
from kg.csv_rows import numbered_rows, open_csv, undecodable
from kg.problems import ProblemLog
from kg.sources import iu_xray

NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip
NIH_NO_FINDING = "No Finding"
NIH_BOX_LABELS = {"Infiltrate": "Infiltration"}  # BBox_List_2017.csv spells one finding differently
CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)  # fmt: skip
STATE_OF_VALUE = {1.0: PRESENT, 0.0: ABSENT, -1.0: UNCERTAIN}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm")
MANIFEST_COLUMNS = ("image", "report", "report_id", "patient", "study", "view")
_Row = tuple[int, dict[str, str]]  # (line the row starts on, {column: stripped value})


class Box(NamedTuple):
    """A finding's box in pixels of the shipped image, for evaluation only."""

    label: str  # NIH label spelling
    x: float
    y: float
    w: float
    h: float


# Readers


def read_nih_cxr14(root: Path, problems: ProblemLog) -> Corpus:
    """NIH ChestX-ray14: the label table and the images, as either full release unpacks them: NIH's own
    (`Data_Entry_2017_v2020.csv`, every `images_0NN.tar.gz` extracted into one `images/`), Kaggle's
    (`Data_Entry_2017.csv`, `images_001/images/` to `images_012/images/`), or a subset such as the shared
    boxed images (`Data_Entry_2017.csv` + `images/`). Its 14 labels are exhaustive (a finding not listed is
    ABSENT, "No Finding" = all 14 ABSENT); each image is its own study, without a report."""
    root = _required(root)
    # NIH's 2020 revision of the table first, when both are there
    table = _first(root, ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"), "NIH ChestX-ray14 label table")
    folders = _nih_image_folders(root)
    files = {file.name: file for folder in folders for file in _entries(folder, None, directories=False)}
    images = _Images(problems)
    with _table(table, problems, ("Image Index", "Finding Labels", "Patient ID", "View Position")) as (_, rows):
        for line, row in rows:
            name, patient = row["Image Index"], row["Patient ID"]
            findings = {label.strip() for label in row["Finding Labels"].split("|") if label.strip()}
            unknown = sorted(findings - {*NIH_FINDINGS, NIH_NO_FINDING})
            if not name or not patient:
                problems.report(table, line, "missing field", "row without an image index or patient id, skipped")
            elif unknown or not findings or (NIH_NO_FINDING in findings and len(findings) > 1):
                message = f"{name}: finding labels {row['Finding Labels']!r} are not NIH's 14 or 'No Finding', skipped"
                problems.report(table, line, "labels", message)
            else:
                labels = {finding: PRESENT if finding in findings else ABSENT for finding in NIH_FINDINGS}
                path = files.get(name, folders[0] / name)  # a name in no folder is reported as missing
                images.add(table, line, ImageRecord(path, name, patient, name, _view(row["View Position"]), labels))
    return _corpus("nih-cxr14", images.records, [], list(NIH_FINDINGS))


def _nih_image_folders(root: Path) -> list[Path]:
    """`images/` and Kaggle's `images_NNN/images/` under `root`, each listed once to find an image by its name
    whatever part of the release holds it, or DatasetError naming the folders looked for."""
    folders = [root / "images"] if (root / "images").is_dir() else []
    folders += [
        part / "images" for part in _entries(root, re.compile(r"images_\d+"), directories=True) if (part / "images").is_dir()
    ]
    if not folders:
        raise DatasetError(
            f"NIH ChestX-ray14 images not found: neither {root / 'images'} nor {root / 'images_001' / 'images'} "
            f"(and the other images_NNN folders)"
        )
    return folders


def read_nih_boxes(root: Path, problems: ProblemLog) -> dict[str, list[Box]]:
    """Boxes of `BBox_List_2017.csv` by image name, labels in the Data_Entry spelling ("Infiltrate" -> "Infiltration").

    The file's header reads `Bbox [x,y,w,h]` unquoted, so its columns are named "Bbox [x", "y", "w", "h]"."""
    table = _required(root / "BBox_List_2017.csv")
    boxes: dict[str, list[Box]] = {}
    coordinates = ("Bbox [x", "y", "w", "h]")
    with _table(table, problems, ("Image Index", "Finding Label", *coordinates)) as (_, rows):
        for line, row in rows:
            label = NIH_BOX_LABELS.get(row["Finding Label"], row["Finding Label"])
            try:
                x, y, w, h = (float(row[column]) for column in coordinates)
            except ValueError:
                problems.report(table, line, "box", f"coordinates {[row[c] for c in coordinates]} are not numbers, skipped")
                continue
            if not row["Image Index"] or label not in NIH_FINDINGS:
                problems.report(table, line, "box", f"image {row['Image Index']!r} or finding {label!r} unknown, skipped")
            else:
                boxes.setdefault(row["Image Index"], []).append(Box(label, x, y, w, h))
    return boxes


def read_chexpert(root: Path, problems: ProblemLog) -> Corpus:
    """CheXpert: `train.csv` and/or `valid.csv` in `root`, images named by their Path column, no reports.

    A Path as published starts with the dataset folder (`CheXpert-v1.0-small/train/patient00001/study1/...`):
    it is resolved against root's parent (root is that folder), else against root (a CSV whose paths start below
    the dataset folder, or root holding the dataset folder), else with its first folder replaced by root (the
    dataset folder renamed). Patient "patient00001" and study "patient00001/study1" come from the path; the view is
    AP / PA (from the AP/PA column) for frontal images when given, else FRONTAL or LATERAL."""
    root = _required(root)
    tables = [root / name for name in ("train.csv", "valid.csv") if (root / name).is_file()]
    if not tables:
        raise DatasetError(f"CheXpert: neither {root / 'train.csv'} nor {root / 'valid.csv'} found")
    images = _Images(problems)
    for table in tables:
        with _table(table, problems, ("Path", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS)) as (_, rows):
            for line, row in rows:
                listed = Path(row["Path"])
                parts = listed.parts
                if len(parts) < 3 or not parts[-3].startswith("patient") or not parts[-2].startswith("study"):
                    problems.report(table, line, "path", f"{row['Path']!r} is not .../patientN/studyN/<view>.jpg, skipped")
                    continue
                candidates = (root.parent / listed, root / listed, root.joinpath(*parts[1:]))
                path = next((c for c in candidates if c.is_file()), candidates[0])
                labels = _labels(row, CHEXPERT_LABELS, table, line, problems)
                view = _chexpert_view(row["Frontal/Lateral"], row["AP/PA"])
                images.add(table, line, ImageRecord(path, row["Path"], parts[-3], f"{parts[-3]}/{parts[-2]}", view, labels))
    return _corpus("chexpert", images.records, [], list(CHEXPERT_LABELS))


def read_mimic_cxr(root: Path, problems: ProblemLog) -> Corpus:
    """MIMIC-CXR-JPG (or the DICOM release): `files/pXX/pSUBJECT/sSTUDY/<dicom_id>.jpg`, each study's report at
    `files/pXX/pSUBJECT/sSTUDY.txt` (the MIMIC-CXR reports layout) or inside the study folder as `sSTUDY/sSTUDY.txt`.

    Patient and study are the numeric ids (as in MIMIC's CSVs); a report's id is its file stem "sSTUDY" (as
    `extract.reports` names it). Labels from `mimic-cxr-2.0.0-chexpert.csv(.gz)` and views from
    `mimic-cxr-2.0.0-metadata.csv(.gz)` when those are in root. A study folder without a report keeps its images;
    a report without a study folder is kept too (the reports-only download). Other entries (PhysioNet's
    index.html) are ignored."""
    root = _required(root)
    files = _required(root / "files")
    labels = _mimic_labels(root, problems)
    views = _mimic_views(root, problems)
    images: list[ImageRecord] = []
    reports: list[ReportRecord] = []
    for group in _entries(files, re.compile(r"p\d+"), directories=True):
        for patient_dir in _entries(group, re.compile(r"p\d+"), directories=True):
            patient = patient_dir.name[1:]
            beside = {f.name[:-4]: f for f in _entries(patient_dir, re.compile(r"s\d+\.txt"), directories=False)}
            folders = {d.name: d for d in _entries(patient_dir, re.compile(r"s\d+"), directories=True)}
            for name in sorted(beside.keys() | folders.keys()):
                study, folder = name[1:], folders.get(name)
                report = beside.get(name) or (folder / f"{name}.txt" if folder and (folder / f"{name}.txt").is_file() else None)
                if report is not None and (text := read_txt_report(report, problems)) is not None:
                    reports.append(ReportRecord(name, text, patient, study))
                for file in _entries(folder, None, directories=False) if folder else []:
                    if file.suffix.lower() in IMAGE_SUFFIXES:
                        labelled = dict(labels.get(study, {}))
                        images.append(ImageRecord(file, file.name, patient, study, views.get(file.stem), labelled))
    return _corpus("mimic-cxr", images, reports, list(CHEXPERT_LABELS) if labels else [])


def read_iu_xray(root: Path, problems: ProblemLog) -> Corpus:
    """IU X-ray (OpenI): the reports (`ecgen-radiology/` or `NLMCXR_reports.tgz`) and the PNGs (`NLMCXR_png/` or
    `images/`), each image named by a report's `parentImage` id + ".png". A report is one study of one patient (its
    id is all three), its frontal and lateral images under that study. Without an image folder (the shared data)
    the corpus is the reports alone, unpaired. Views are not recorded in the reports (None); there are no labels."""
    root = _required(root)
    source = _first(root, ("ecgen-radiology", "NLMCXR_reports.tgz"), "IU X-ray reports")
    folder = next((root / name for name in ("NLMCXR_png", "images") if (root / name).is_dir()), None)
    images = _Images(problems)
    reports: list[ReportRecord] = []
    for parsed in iu_xray.iter_reports(source, problems):
        text = iu_report(parsed).text
        if text:
            reports.append(ReportRecord(parsed.id, text, parsed.id, parsed.id))
        else:
            problems.report(source, None, "empty report", f"report {parsed.id} has no text, skipped")
        for image_id in parsed.images if folder is not None else []:
            name = f"{image_id}.png"
            images.add(source, None, ImageRecord(folder / name, name, parsed.id, parsed.id, None, {}))
    return _corpus("iu-xray", images.records, reports, [])


def read_csv(manifest: Path, problems: ProblemLog, reports: Path | None = None) -> Corpus:
    """A manifest CSV: column `image` (path relative to the manifest's folder) and either `report` (the text) or
    `report_id` (an id in `reports`: an IU archive, a CSV with id,text or a folder of .txt, read by
    `extract.reports.iter_reports`; a relative `reports` is taken from the manifest's folder too) or neither (an
    image–label corpus). Optional `patient`, `study`, `view`; every other named column is a label.

    The study defaults to the report id, else the image; the patient to the study. Rows of one study share one
    report: its first non-empty text, a different later text is reported. Reports of `reports` that no row names
    are kept without a study (text for the report side)."""
    manifest = _required(manifest)
    with _table(manifest, problems, ("image",)) as (columns, rows):
        if "report" in columns and "report_id" in columns:
            raise DatasetError(f"{manifest}: give either a 'report' (text) or a 'report_id' column, not both")
        if ("report_id" in columns) != (reports is not None):
            raise DatasetError(f"{manifest}: a 'report_id' column and reports=... go together (reports={reports})")
        label_names = [c for c in columns if c and c not in MANIFEST_COLUMNS]
        texts = _report_texts(manifest.parent / reports, problems) if reports is not None else {}
        images = _Images(problems)
        found: dict[str, ReportRecord] = {}  # report id -> record, in first-use order
        for line, row in rows:
            report_id = row.get("report_id", "")
            study = row.get("study") or report_id or row["image"]
            patient = row.get("patient") or study
            if not row["image"]:
                problems.report(manifest, line, "missing field", "row without an image, skipped")
                continue
            path = manifest.parent / row["image"]
            labels = _labels(row, label_names, manifest, line, problems)
            images.add(manifest, line, ImageRecord(path, row["image"], patient, study, _view(row.get("view", "")), labels))
            if "report" in columns:
                _add_report(found, ReportRecord(study, row["report"], patient, study), manifest, line, problems)
            elif report_id in texts:
                _add_report(found, ReportRecord(report_id, texts[report_id], patient, study), manifest, line, problems)
            elif "report_id" in columns:
                problems.report(manifest, line, "missing report", f"report {report_id!r} not in {reports}; image kept")
    unnamed = [ReportRecord(i, text, None, None) for i, text in texts.items() if i not in found]
    return _corpus("csv", images.records, [*found.values(), *unnamed], label_names)


READERS: dict[str, Callable[[Path, ProblemLog], Corpus]] = {
    "nih-cxr14": read_nih_cxr14,
    "chexpert": read_chexpert,
    "mimic-cxr": read_mimic_cxr,
    "iu-xray": read_iu_xray,
    "csv": read_csv,
}


def read_corpus(kind: str, root: Path, problems: ProblemLog, *, reports: Path | None = None) -> Corpus:
    """The corpus of `kind` (a key of READERS) at `root` (a folder; for "csv" the manifest file).

    `reports` is for "csv" only: where a manifest's `report_id`s are found."""
    reader = READERS.get(kind)
    if reader is None:
        raise DatasetError(f"unknown corpus kind {kind!r}; known kinds: {', '.join(READERS)}")
    if kind == "csv":
        return read_csv(root, problems, reports)
    if reports is not None:
        raise DatasetError(f"{kind}: 'reports' is for a csv manifest only; {kind} finds its reports in {root}")
    return reader(root, problems)


# Helpers shared by the readers


class _Images:
    """A reader's images in order: an image name seen before or a file that is not there is reported, not kept."""

    def __init__(self, problems: ProblemLog) -> None:
        self.problems = problems
        self.records: list[ImageRecord] = []
        self._seen: set[str] = set()

    def add(self, file: Path, line: int | None, record: ImageRecord) -> None:
        if record.name in self._seen:
            self.problems.report(file, line, "duplicate image", f"{record.name} listed before, skipped")
        elif not record.path.is_file():
            self.problems.report(file, line, "missing image", f"{record.path} not found, skipped")
        else:
            self._seen.add(record.name)
            self.records.append(record)


def _corpus(name: str, images: list[ImageRecord], reports: list[ReportRecord], label_names: list[str]) -> Corpus:
    with_images = {image.study for image in images}
    paired = any(report.study in with_images for report in reports)
    return Corpus(name, images, reports, paired, label_names)


def _required(path: Path) -> Path:
    """`path` made absolute (records carry absolute paths), or DatasetError when it is not there."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset file not found: {path}")
    return path.absolute()


def _first(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (root / name).exists():
            return root / name
    raise DatasetError(f"{what} not found: none of {', '.join(str(root / name) for name in names)}")


def _entries(folder: Path, pattern: re.Pattern[str] | None, directories: bool) -> list[Path]:
    """Sub-folders or files of `folder` whose whole name matches `pattern`, sorted (one scandir, no stat per entry)."""
    with os.scandir(folder) as scan:
        return sorted(
            Path(entry.path)
            for entry in scan
            if entry.is_dir() == directories and (pattern is None or pattern.fullmatch(entry.name))
        )


@contextmanager
def _table(path: Path, problems: ProblemLog, required: Sequence[str]) -> Iterator[tuple[list[str], Iterator[_Row]]]:
    """(column names, rows as (line, {column: stripped value})) of a CSV or CSV.gz; DatasetError when a required
    column is missing. A row with too few or surplus non-blank fields, or a byte that is not UTF-8, is reported
    with its line and costs that row alone (`kg.csv_rows`)."""
    path = _required(path)
    with open_csv(path) as stream:
        reader = csv.reader(stream)
        try:
            header = next(reader, None) or []
        except csv.Error as e:
            raise DatasetError(f"{path}: unreadable CSV header ({e})") from e
        if undecodable(header):
            raise DatasetError(f"{path}: the CSV header is not UTF-8")
        columns = [name.strip() for name in header]
        missing = [name for name in required if name not in columns]
        if missing:
            raise DatasetError(f"{path}: columns {missing} missing from the header {header}")
        yield columns, _rows(path, reader, columns, problems)


def _rows(path: Path, reader: Any, columns: list[str], problems: ProblemLog) -> Iterator[_Row]:
    """Rows of a `csv.reader` past its header, with the line each starts on (quoted fields may span lines)."""
    width = max(i for i, name in enumerate(columns) if name) + 1  # trailing blank header names are not columns
    for row_line, row in numbered_rows(path, reader, problems):
        if len(row) < width or any(field.strip() for field in row[width:]):
            problems.report(path, row_line, "column count", f"{len(row)} fields, the header has {width}; skipped")
            continue
        yield row_line, {name: field.strip() for name, field in zip(columns, row) if name}


def _labels(row: dict[str, str], names: Sequence[str], file: Path, line: int, problems: ProblemLog) -> dict[str, int]:
    """Label states of a row; a value other than 1 / 0 / -1 / blank is reported and that label left unknown."""
    labels: dict[str, int] = {}
    for name in names:
        value = row.get(name, "")
        if not value:
            continue
        try:
            state = STATE_OF_VALUE.get(float(value))
        except ValueError:
            state = None
        if state is None:
            problems.report(file, line, "label value", f"{name} = {value!r}, expected 1, 0, -1 or blank; left unknown")
        else:
            labels[name] = state
    return labels


def _view(value: str) -> str | None:
    return value.strip().upper() or None


def _chexpert_view(frontal_lateral: str, ap_pa: str) -> str | None:
    if frontal_lateral == "Lateral":
        return "LATERAL"
    if frontal_lateral == "Frontal":
        return _view(ap_pa) or "FRONTAL"
    return None


def _optional(root: Path, stem: str) -> Path | None:
    return next((root / f"{stem}{suffix}" for suffix in (".csv", ".csv.gz") if (root / f"{stem}{suffix}").is_file()), None)


def _mimic_labels(root: Path, problems: ProblemLog) -> dict[str, dict[str, int]]:
    """CheXpert labels by study id, from `mimic-cxr-2.0.0-chexpert.csv(.gz)`; empty when it is not there."""
    table = _optional(root, "mimic-cxr-2.0.0-chexpert")
    if table is None:
        return {}
    with _table(table, problems, ("subject_id", "study_id", *CHEXPERT_LABELS)) as (_, rows):
        return {row["study_id"]: _labels(row, CHEXPERT_LABELS, table, line, problems) for line, row in rows}


def _mimic_views(root: Path, problems: ProblemLog) -> dict[str, str | None]:
    """ViewPosition by dicom_id, from `mimic-cxr-2.0.0-metadata.csv(.gz)`; empty when it is not there."""
    table = _optional(root, "mimic-cxr-2.0.0-metadata")
    if table is None:
        return {}
    with _table(table, problems, ("dicom_id", "ViewPosition")) as (_, rows):
        return {row["dicom_id"]: _view(row["ViewPosition"]) for _, row in rows}


def _report_texts(source: Path, problems: ProblemLog) -> dict[str, str]:
    """Texts by report id of a manifest's `reports`; reports without text are reported and left out."""
    texts: dict[str, str] = {}
    for report in iter_reports(_required(source), problems):
        if report.text.strip():
            texts[report.id] = report.text
        else:
            problems.report(source, None, "empty report", f"report {report.id} has no text, skipped")
    return texts


def _add_report(found: dict[str, ReportRecord], report: ReportRecord, file: Path, line: int, problems: ProblemLog) -> None:
    """Keep a manifest row's report: the first non-empty text of its id; an empty or a different text is reported."""
    known = found.get(report.id)
    if not report.text:
        problems.report(file, line, "empty report", f"report of {report.study!r} has no text")
    elif known is None:
        found[report.id] = report
    elif known.text != report.text or known.study != report.study:
        message = f"report {report.id!r} given before (study {known.study!r}) differs, kept the first"
        problems.report(file, line, "conflicting report", message)
