"""Corpus readers (NIH, CheXpert, MIMIC-CXR, IU X-ray, CSV manifest), image decoding and caching, patient splits.

Small datasets are written in each published layout into tmp_path; NIH is also read from the real shared folder.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignment.data.corpora import (
    NIH_FINDINGS,
    read_chexpert,
    read_corpus,
    read_csv,
    read_iu_xray,
    read_mimic_cxr,
    read_nih_boxes,
)
from alignment.data.images import ImageCache, ImageReadError, read_image
from alignment.data.records import DatasetError, ImageRecord, ReportRecord
from alignment.data.split import assert_disjoint, patient_split
from alignment.states import ABSENT, PRESENT, UNCERTAIN
from kg.problems import ProblemLog

BOM = "\ufeff"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def png(path: Path, pixels: np.ndarray | None = None) -> Path:
    """A PNG of `pixels` (uint8 or uint16 2-D), default a small gradient."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) if pixels is None else pixels).save(path)
    return path


def jpg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 128).save(path)
    return path


def dicom(path: Path, pixels: np.ndarray, photometric: str, window: tuple[float, float] | None = None) -> Path:
    """A minimal CR image file: 12 bits stored in 16, unsigned, explicit VR little endian."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# Images


def test_png_8_and_16_bit_jpeg_and_rgb_read_as_grayscale_in_unit_range(tmp_path):
    eight = read_image(png(tmp_path / "8.png", np.array([[0, 255], [51, 102]], dtype=np.uint8)))
    assert eight.dtype == torch.float32 and eight.shape == (1, 2, 2)
    assert torch.allclose(eight, torch.tensor([[[0.0, 1.0], [0.2, 0.4]]]))
    sixteen = read_image(png(tmp_path / "16.png", np.array([[0, 65535], [1, 32768]], dtype=np.uint16)))
    assert torch.allclose(sixteen, torch.tensor([[[0.0, 1.0], [1 / 65535, 32768 / 65535]]]))
    assert sixteen[0, 1, 0] > 0  # 16-bit precision kept, not cut to 8 bits
    assert torch.allclose(read_image(jpg(tmp_path / "a.jpg")), torch.full((1, 8, 8), 128 / 255), atol=2 / 255)
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "red.png")
    assert torch.allclose(read_image(tmp_path / "red.png"), torch.full((1, 4, 4), 76 / 255))  # ITU-R 601 luminance of red
    resized = read_image(tmp_path / "8.png", size=16)
    assert resized.shape == (1, 16, 16) and 0 <= resized.min() and resized.max() <= 1


def test_dicom_window_and_monochrome1_inversion(tmp_path):
    stored = np.array([[0, 1000], [2000, 4095]])
    # LINEAR window c=1000, w=1001 (PS3.3 C.11.2.1.2.1): below 499.5 -> 0, above 1499.5 -> 1, 1000 -> 0.5005
    windowed = np.array([[0.0, 0.5005], [1.0, 1.0]])
    mono2 = read_image(dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2", (1000, 1001)))
    assert mono2.shape == (1, 2, 2) and mono2.dtype == torch.float32
    assert np.allclose(mono2[0].numpy(), windowed, atol=1e-6)
    mono1 = read_image(dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1", (1000, 1001)))
    assert np.allclose(mono1[0].numpy(), 1 - windowed, atol=1e-6)  # low values are white in MONOCHROME1
    plain = read_image(dicom(tmp_path / "plain.dcm", stored, "MONOCHROME2"))  # no window: its own min..max
    assert np.allclose(plain[0].numpy(), stored / 4095, atol=1e-6)
    assert read_image(tmp_path / "m1.dcm", size=4).shape == (1, 4, 4)


def test_corrupt_files_raise_image_read_error_naming_the_path(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 200)
    for name in ("bad.png", "bad.dcm", "gone.png"):
        with pytest.raises(ImageReadError) as caught:
            read_image(tmp_path / name)
        assert caught.value.path == tmp_path / name and str(tmp_path / name) in str(caught.value)


def test_image_cache_skips_unreadable_images_and_reloads_identically_from_disk(nih, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    records = [*nih.images[:10], ImageRecord(corrupt, corrupt.name, "x", "x", None, {}), *nih.images[10:20]]
    cache, cache_dir = ImageCache(workers=2), tmp_path / "cache"

    problems = ProblemLog()
    started = time.perf_counter()
    pixels, kept = cache.load(records, 64, problems, cache_dir=cache_dir, progress=False)
    decoding = time.perf_counter() - started
    assert pixels.shape == (20, 1, 64, 64) and pixels.dtype == torch.uint8
    assert kept == [*nih.images[:10], *nih.images[10:20]]
    assert [(p.file, p.kind) for p in problems.problems] == [(str(corrupt), "unreadable image")]
    expected = (read_image(nih.images[3].path, 64) * 255).round().to(torch.uint8)
    assert torch.equal(pixels[3], expected)
    assert len(list(cache_dir.iterdir())) == 1

    again = ProblemLog()
    started = time.perf_counter()
    cached, kept_again = cache.load(records, 64, again, cache_dir=cache_dir, progress=False)
    assert time.perf_counter() - started < decoding
    assert torch.equal(cached, pixels) and kept_again == kept
    assert [p.file for p in again.problems] == [str(corrupt)]  # a cached run reports the same skips

    other, _ = cache.load(records[:5], 32, ProblemLog(), cache_dir=cache_dir, progress=False)
    assert other.shape == (5, 1, 32, 32) and len(list(cache_dir.iterdir())) == 2  # another key, another file


# Real NIH ChestX-ray14 folder


@pytest.fixture(scope="module")
def nih(data_dir):
    problems = ProblemLog(strict=True)
    return read_corpus("nih-cxr14", data_dir / "nih-cxr14-bbox", problems)


def test_nih_real_folder_has_exhaustive_labels(nih):
    assert nih.name == "nih-cxr14" and not nih.paired and nih.reports == []
    assert len(nih.images) == 613 and len({image.patient for image in nih.images}) == 509
    assert nih.label_names == list(NIH_FINDINGS) and "Pleural_Thickening" in nih.label_names
    assert all(image.labels.keys() == set(NIH_FINDINGS) for image in nih.images)
    assert all(image.path.is_absolute() and image.path.is_file() for image in nih.images)
    first = nih.images[0]
    assert (first.name, first.patient, first.study, first.view) == ("00000032_037.png", "32", "00000032_037.png", "AP")
    assert {f for f, state in first.labels.items() if state == PRESENT} == {"Cardiomegaly", "Edema", "Infiltration"}
    no_finding = [image for image in nih.images if PRESENT not in image.labels.values()]
    assert len(no_finding) == 2 and all(set(image.labels.values()) == {ABSENT} for image in no_finding)
    assert len(nih.studies()) == 613 and nih.report_of(first.study) is None


def test_nih_boxes_use_the_label_spelling(data_dir, nih):
    boxes = read_nih_boxes(data_dir / "nih-cxr14-bbox", ProblemLog(strict=True))
    assert len(boxes) == 598 and sum(map(len, boxes.values())) == 670
    labels = [box.label for image_boxes in boxes.values() for box in image_boxes]
    assert "Infiltrate" not in labels and labels.count("Infiltration") == 95 and set(labels) <= set(NIH_FINDINGS)
    label, x, y, w, h = boxes["00013118_008.png"][0]
    assert (label, x, y, w, h) == ("Atelectasis", 112.54, 273.51, 43.39, 39.59)
    by_name = {image.name: image for image in nih.images}
    assert all(by_name[name].labels[box.label] == PRESENT for name, bs in boxes.items() for box in bs if name in by_name)


def test_nih_missing_image_and_bad_labels_are_reported_with_their_line(tmp_path):
    png(tmp_path / "images" / "a.png"), png(tmp_path / "images" / "c.png")
    write(
        tmp_path / "Data_Entry_2017.csv",
        BOM + "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
        "a.png,Effusion|Mass,0,1,50,F,PA,2500,2048,0.168,0.168\n"
        "b.png,No Finding,0,2,50,F,PA,2500,2048,0.168,0.168\n"
        "c.png,Effusion|Fluid,0,3,50,F,PA,2500,2048,0.168,0.168\n",
    )
    problems = ProblemLog()
    corpus = read_corpus("nih-cxr14", tmp_path, problems)
    assert [image.name for image in corpus.images] == ["a.png"]
    assert [(Path(p.file).name, p.line, p.kind) for p in problems.problems] == [
        ("Data_Entry_2017.csv", 3, "missing image"),
        ("Data_Entry_2017.csv", 4, "labels"),
    ]


NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n")


@pytest.mark.parametrize("layout", ["nih", "kaggle"])
def test_nih_full_release_layouts_are_read(tmp_path, layout):
    """NIH's download extracts every tarball into one images/ beside Data_Entry_2017_v2020.csv; Kaggle's keeps
    images_001/images/ ... images_012/images/ beside Data_Entry_2017.csv."""
    if layout == "nih":
        table = tmp_path / "Data_Entry_2017_v2020.csv"
        folders = {"a.png": tmp_path / "images", "b.png": tmp_path / "images"}
    else:
        table = tmp_path / "Data_Entry_2017.csv"
        folders = {"a.png": tmp_path / "images_001" / "images", "b.png": tmp_path / "images_012" / "images"}
        (tmp_path / "images_003").mkdir()  # an archive not unpacked yet: no images/ inside, not an error
    for name, folder in folders.items():
        png(folder / name)
    write(table, NIH_HEADER + "a.png,Effusion,0,1,50,F,PA,2500,2048,0.168,0.168\n"
                              "b.png,No Finding,0,2,50,F,AP,2500,2048,0.168,0.168\n"
                              "c.png,Mass,0,3,50,F,PA,2500,2048,0.168,0.168\n")
    problems = ProblemLog()
    corpus = read_corpus("nih-cxr14", tmp_path, problems)
    assert [(image.name, image.path) for image in corpus.images] == [(n, f / n) for n, f in folders.items()]
    assert corpus.images[0].labels["Effusion"] == PRESENT and corpus.images[1].labels["Effusion"] == ABSENT
    assert [(Path(p.file).name, p.line, p.kind) for p in problems.problems] == [(table.name, 4, "missing image")]


def test_nih_without_an_images_folder_names_the_folders_looked_for(tmp_path):
    write(tmp_path / "Data_Entry_2017.csv", NIH_HEADER)
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "images")) + ".*images_001"):
        read_corpus("nih-cxr14", tmp_path, ProblemLog())


def test_patient_split_is_disjoint_deterministic_and_stable_under_additions(nih):
    split = patient_split(nih.images, seed=0)
    assert_disjoint(split)
    assert sum(map(len, split.values())) == 613
    patients = {side: {image.patient for image in records} for side, records in split.items()}
    assert 0.55 < len(patients["train"]) / 509 < 0.85 and patients["valid"] and patients["test"]
    assert patient_split(nih.images, seed=0) == split
    assert patient_split(nih.images, seed=1) != split

    added = ImageRecord(Path("/new.png"), "new.png", "new patient", "new.png", "PA", {})
    grown = patient_split([*nih.images, added], seed=0)
    assert {side: [r for r in records if r is not added] for side, records in grown.items()} == split

    reports = [ReportRecord("r1", "text", None, None), ReportRecord("r2", "text", "32", "s")]
    assert_disjoint(patient_split(reports))
    with pytest.raises(AssertionError, match="1 patients"):
        assert_disjoint({"train": nih.images[:1], "valid": [], "test": nih.images[:1]})
    with pytest.raises(ValueError, match="summing to 1"):
        patient_split(nih.images, fractions=(0.5, 0.1, 0.1))


# MIMIC-CXR


def test_mimic_layout_with_reports_labels_and_views(tmp_path):
    patient = tmp_path / "files" / "p10" / "p10000032"
    png(patient / "s50000001" / "d1.jpg"), jpg(patient / "s50000001" / "d2.jpg")
    write(patient / "s50000001.txt", "FINDINGS: Small left effusion.\n")  # the reports release: beside the study folder
    jpg(patient / "s50000002" / "d3.jpg")
    write(patient / "s50000002" / "s50000002.txt", BOM + "IMPRESSION: Normal.\n")  # inside the study folder
    jpg(patient / "s50000003" / "d4.jpg")
    write(patient / "s50000003.txt", "  \n")  # empty: reported, its image kept
    write(tmp_path / "files" / "p10" / "p10000033" / "s50000004.txt", "FINDINGS: No images for this one.\n")
    write(tmp_path / "files" / "p10" / "index.html", "<html/>")
    labels = (
        "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
        "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices\n"
        "10000032,50000001,,,,,,,,,,1.0,,-1.0,0.0,\n"
        "10000032,50000002,,,,,,,,,1.0,,,,,\n"
    )
    (tmp_path / "mimic-cxr-2.0.0-chexpert.csv.gz").write_bytes(gzip.compress(labels.encode()))
    write(tmp_path / "mimic-cxr-2.0.0-metadata.csv", "dicom_id,subject_id,study_id,ViewPosition\nd1,10000032,50000001,PA\nd2,10000032,50000001,LATERAL\nd3,10000032,50000002,\n")

    problems = ProblemLog()
    corpus = read_corpus("mimic-cxr", tmp_path, problems)
    assert corpus.name == "mimic-cxr" and corpus.paired
    assert [(i.name, i.patient, i.study, i.view) for i in corpus.images] == [
        ("d1.jpg", "10000032", "50000001", "PA"),
        ("d2.jpg", "10000032", "50000001", "LATERAL"),
        ("d3.jpg", "10000032", "50000002", None),
        ("d4.jpg", "10000032", "50000003", None),
    ]
    assert corpus.images[0].labels == {"Pleural Effusion": PRESENT, "Pneumonia": UNCERTAIN, "Pneumothorax": ABSENT}
    assert corpus.images[2].labels == {"No Finding": PRESENT} and corpus.images[3].labels == {}
    assert [(r.id, r.patient, r.study) for r in corpus.reports] == [
        ("s50000001", "10000032", "50000001"),
        ("s50000002", "10000032", "50000002"),
        ("s50000004", "10000033", "50000004"),
    ]
    assert corpus.reports[1].text == "IMPRESSION: Normal.\n"  # BOM dropped
    assert [image.name for image in corpus.studies()["50000001"]] == ["d1.jpg", "d2.jpg"]  # frontal + lateral
    assert corpus.report_of("50000001").text.startswith("FINDINGS: Small") and corpus.report_of("50000003") is None
    assert [(Path(p.file).name, p.kind) for p in problems.problems] == [("s50000003.txt", "empty report")]


# IU X-ray


def iu_xml(report_id: str, findings: str, images: list[str]) -> bytes:
    parents = "".join(f'<parentImage id="{image}"><caption>Xray Chest</caption></parentImage>' for image in images)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><eCitation><uId id="{report_id}"/><MedlineCitation><Article><Abstract>'
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText><AbstractText Label="IMPRESSION">Normal.</AbstractText>'
        f"</Abstract></Article></MedlineCitation>{parents}</eCitation>"
    ).encode()


@pytest.fixture
def iu_root(tmp_path) -> Path:
    with tarfile.open(tmp_path / "NLMCXR_reports.tgz", "w:gz") as archive:
        for n, (report_id, findings, images) in enumerate(
            [("CXR1", "Clear lungs.", ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"]), ("CXR2", "Small effusion.", ["CXR2_1_IM-0652-1001"])], 1
        ):
            data = iu_xml(report_id, findings, images)
            member = tarfile.TarInfo(f"ecgen-radiology/{n}.xml")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return tmp_path


def test_iu_reports_with_images_form_multi_view_studies(iu_root):
    png(iu_root / "NLMCXR_png" / "CXR1_1_IM-0001-3001.png"), png(iu_root / "NLMCXR_png" / "CXR1_1_IM-0001-4001.png")
    problems = ProblemLog()
    corpus = read_iu_xray(iu_root, problems)
    assert corpus.paired and corpus.label_names == []
    assert [(r.id, r.patient, r.study) for r in corpus.reports] == [("CXR1", "CXR1", "CXR1"), ("CXR2", "CXR2", "CXR2")]
    assert corpus.reports[0].text == "FINDINGS: Clear lungs.\n\nIMPRESSION: Normal."  # extract.reports' IU text
    assert {study: [i.name for i in images] for study, images in corpus.studies().items()} == {
        "CXR1": ["CXR1_1_IM-0001-3001.png", "CXR1_1_IM-0001-4001.png"]
    }
    assert corpus.report_of("CXR1") is corpus.reports[0]
    assert [(p.kind, "CXR2_1_IM-0652-1001.png" in p.message) for p in problems.problems] == [("missing image", True)]


def test_iu_without_its_image_folder_is_a_reports_only_corpus(iu_root, data_dir):
    corpus = read_corpus("iu-xray", iu_root, ProblemLog(strict=True))
    assert not corpus.paired and corpus.images == [] and len(corpus.reports) == 2
    real = read_iu_xray(data_dir / "iu-xray", problems := ProblemLog())
    assert not real.paired and len(real.reports) + len(problems) == 3955
    assert set(problems.counts()) == {"empty report"}


# CheXpert


CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,"
    "Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices\n"
)


@pytest.mark.parametrize("folder", ["CheXpert-v1.0-small", "renamed"])
def test_chexpert_labels_views_and_paths(tmp_path, folder):
    root = tmp_path / folder
    prefix = "CheXpert-v1.0-small/train/patient00001/study1"
    jpg(root / "train/patient00001/study1/view1_frontal.jpg"), jpg(root / "train/patient00001/study1/view2_lateral.jpg")
    jpg(root / "valid/patient64541/study1/view1_frontal.jpg")
    write(
        root / "train.csv",
        BOM + CHEXPERT_HEADER + f"{prefix}/view1_frontal.jpg,Female,68,Frontal,AP,,,1.0,-1.0,,,,,,0.0,,,,maybe\n"
        f"{prefix}/view2_lateral.jpg,Female,68,Lateral,,,,1.0,-1.0,,,,,,0.0,,,,\n"
        "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Male,40,Frontal,PA,1.0,,,,,,,,,,,,,\n",
    )
    write(root / "valid.csv", CHEXPERT_HEADER + "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,PA,"
          "0.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n")  # fmt: skip
    problems = ProblemLog()
    corpus = read_chexpert(root, problems)
    assert not corpus.paired and len(corpus.label_names) == 14
    assert [(i.patient, i.study, i.view) for i in corpus.images] == [
        ("patient00001", "patient00001/study1", "AP"),
        ("patient00001", "patient00001/study1", "LATERAL"),
        ("patient64541", "patient64541/study1", "PA"),
    ]
    first = corpus.images[0]
    assert first.name == f"{prefix}/view1_frontal.jpg" and first.path == (root / "train/patient00001/study1/view1_frontal.jpg").absolute()
    assert first.labels == {"Cardiomegaly": PRESENT, "Lung Opacity": UNCERTAIN, "Pneumothorax": ABSENT}  # blank: unknown
    assert len(corpus.images[2].labels) == 14
    assert [(Path(p.file).name, p.line, p.kind) for p in problems.problems] == [
        ("train.csv", 2, "label value"),  # Support Devices = "maybe": left unknown, the row kept
        ("train.csv", 4, "missing image"),
    ]


# CSV manifest


def test_csv_manifest_with_report_text_labels_and_bom(tmp_path):
    png(tmp_path / "img" / "a.png"), png(tmp_path / "img" / "b.png"), png(tmp_path / "img" / "c.png")
    write(
        tmp_path / "manifest.csv",
        BOM + "image,report,patient,study,view,Effusion,Nodule\n"
        'img/a.png,"FINDINGS: Effusion.\nIMPRESSION: Effusion.",p1,s1,pa,1,\n'
        'img/b.png,"FINDINGS: Effusion.\nIMPRESSION: Effusion.",p1,s1,lateral,1,0\n'
        "img/c.png,,p2,s2,,-1,\n",
    )
    problems = ProblemLog()
    corpus = read_corpus("csv", tmp_path / "manifest.csv", problems)
    assert corpus.paired and corpus.label_names == ["Effusion", "Nodule"]
    assert [(i.name, i.patient, i.study, i.view, i.labels) for i in corpus.images] == [
        ("img/a.png", "p1", "s1", "PA", {"Effusion": PRESENT}),
        ("img/b.png", "p1", "s1", "LATERAL", {"Effusion": PRESENT, "Nodule": ABSENT}),
        ("img/c.png", "p2", "s2", None, {"Effusion": UNCERTAIN}),
    ]
    assert corpus.images[0].path == (tmp_path / "img" / "a.png").absolute()
    assert corpus.reports == [ReportRecord("s1", "FINDINGS: Effusion.\nIMPRESSION: Effusion.", "p1", "s1")]
    assert [(p.line, p.kind) for p in problems.problems] == [(6, "empty report")]  # quoted texts span lines


def test_a_bad_byte_or_a_long_report_in_a_manifest_costs_that_row_alone(tmp_path):
    rows = [f"img/{i}.png,FINDINGS: report {i}.,p{i}\n".encode() for i in range(6)]
    for i in range(6):
        png(tmp_path / "img" / f"{i}.png")
    rows[2] = b"img/2.png,FINDINGS: caf\xe9 effusion.,p2\n"                      # Latin-1, not UTF-8
    rows[4] = f"img/4.png,\"FINDINGS: {'long text ' * 20_000}\",p4\n".encode()  # 200 KB: a valid report
    (tmp_path / "manifest.csv").write_bytes(b"image,report,patient\n" + b"".join(rows))
    problems = ProblemLog()
    corpus = read_corpus("csv", tmp_path / "manifest.csv", problems)
    assert [i.name for i in corpus.images] == ["img/0.png", "img/1.png", "img/3.png", "img/4.png", "img/5.png"]
    assert len(corpus.reports[3].text) > 190_000
    assert [(p.line, p.kind) for p in problems.problems] == [(4, "encoding")]


def test_csv_manifest_with_report_ids(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("MEDKG_DATA_DIR", str(data_dir))  # extract.reports sections CSV reports with the shared lexicons
    png(tmp_path / "a.png"), png(tmp_path / "b.png")
    write(tmp_path / "reports.csv", "id,text\nr1,FINDINGS: Clear.\nr2,FINDINGS: Unused.\n")
    write(tmp_path / "manifest.csv", "image,report_id\na.png,r1\nb.png,r9\n")
    problems = ProblemLog()
    corpus = read_csv(tmp_path / "manifest.csv", problems, reports=Path("reports.csv"))
    assert [(i.name, i.patient, i.study) for i in corpus.images] == [("a.png", "r1", "r1"), ("b.png", "r9", "r9")]
    assert corpus.reports == [ReportRecord("r1", "FINDINGS: Clear.", "r1", "r1"), ReportRecord("r2", "FINDINGS: Unused.", None, None)]
    assert corpus.paired and corpus.report_of("r1").text == "FINDINGS: Clear." and corpus.report_of("r9") is None
    assert [(p.line, p.kind) for p in problems.problems] == [(3, "missing report")]
    with pytest.raises(DatasetError, match="reports"):
        read_csv(tmp_path / "manifest.csv", ProblemLog())


# Errors


def test_unknown_kind_and_missing_files_fail_loudly_with_the_path(tmp_path):
    with pytest.raises(DatasetError, match="known kinds: nih-cxr14, chexpert, mimic-cxr, iu-xray, csv"):
        read_corpus("padchest", tmp_path, ProblemLog())
    with pytest.raises(DatasetError, match=str(tmp_path / "Data_Entry_2017.csv")):
        read_corpus("nih-cxr14", tmp_path, ProblemLog())
    with pytest.raises(DatasetError, match="files"):
        read_mimic_cxr(tmp_path, ProblemLog())
    with pytest.raises(DatasetError, match="NLMCXR_reports.tgz"):
        read_corpus("iu-xray", tmp_path, ProblemLog())
    with pytest.raises(DatasetError, match="train.csv"):
        read_corpus("chexpert", tmp_path, ProblemLog())
    with pytest.raises(DatasetError, match="missing"):
        write(tmp_path / "m.csv", "picture,report\n")
        read_corpus("csv", tmp_path / "m.csv", ProblemLog())
    with pytest.raises(DatasetError, match="csv manifest only"):
        read_corpus("nih-cxr14", tmp_path, ProblemLog(), reports=tmp_path)
