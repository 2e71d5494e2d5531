"""IU X-ray (OpenI) reader: report XML, and relations mined from the manual MeSH annotations.

A manual annotation reads `Finding/qualifier/...`, e.g. `Opacity/lung/base/left/mild`. Each
qualifier is sorted by a small vocabulary taken from the collection's own qualifier list into
anatomy (-> located_at), location, laterality, severity or other modifier (-> has_modifier).
Some annotations name the anatomy first and the abnormality as a qualifier (`Lung/hypoinflation`,
`Aorta/tortuous`, `Diaphragm/right/elevated`); there the abnormality is the finding and the
anatomy locates it, so that `lung` is always anatomy and never a finding.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import IO

from kg.model import SourceConcept, SourceRelation
from kg.problems import MalformedInputError, ProblemLog

SOURCE = "IUXRAY"
NOT_FINDINGS = {"normal", "no indexing"}
LATERALITY = {"left", "right", "bilateral"}
SEVERITY = {"mild", "moderate", "severe", "minimal", "small", "large", "borderline"}
LOCATION = {
    "base", "apex", "upper lobe", "middle lobe", "lower lobe", "lingula", "hilum",
    "retrocardiac", "paratracheal", "supracardiac", "anterior", "posterior", "multilobar",
}  # fmt: skip
ANATOMY = {
    "lung", "azygos lobe", "pulmonary alveoli", "bronchi", "trachea", "trachea, carina",
    "heart", "heart atria", "heart ventricles", "cardiac shadow", "aortic valve", "mitral valve",
    "aorta", "aorta, thoracic", "pulmonary artery", "blood vessels", "coronary vessels",
    "mediastinum", "lymph nodes", "esophagus", "adipose tissue",
    "pleura", "pleural sinus", "costophrenic angle", "cardiophrenic angle", "sulcus", "diaphragm",
    "thorax", "abdomen", "neck", "breast", "shoulder", "humerus", "clavicle", "sternum", "ribs",
    "spine", "cervical vertebrae", "thoracic vertebrae", "lumbar vertebrae", "bone and bones",
}  # fmt: skip
# Descriptors that name the abnormality when an annotation starts with anatomy; after a real
# finding they are ordinary modifiers ("Epicardial Fat/prominent").
ABNORMALITY = {
    "degenerative", "hypoinflation", "hyperdistention", "tortuous", "enlarged", "prominent",
    "elevated", "flattened", "blunted", "obscured", "irregular", "abnormal",
}  # fmt: skip
TUI_BY_ROLE = {
    "finding": "T033",  # Finding
    "anatomy": "T023",  # Body Part, Organ, or Organ Component
    "location": "T082",  # Spatial Concept
    "laterality": "T082",
    "severity": "T080",  # Qualitative Concept
    "modifier": "T080",
}


@dataclass(slots=True)
class IUReport:
    """One report as the entity-extraction stage needs it."""

    id: str  # "CXR1", from <uId id="CXR1"/>
    sections: dict[str, str]  # COMPARISON / INDICATION / FINDINGS / IMPRESSION, empty ones left out
    mesh_major: list[str]  # manual annotations, "Opacity/lung/base/left/mild"
    mesh_auto: list[str]  # automatic MeSH terms
    images: list[str]  # parentImage ids, "CXR1_1_IM-0001-3001"


def read(path: Path, problems: ProblemLog) -> tuple[list[SourceConcept], list[SourceRelation]]:
    """Concepts for every finding and qualifier term, relations with support = reports that state them."""
    names: dict[str, str] = {}  # code -> first spelling seen
    roles: dict[str, set[str]] = {}
    support: Counter[tuple[str, str, str]] = Counter()
    for report in iter_reports(path, problems):
        in_report: set[tuple[str, str, str]] = set()
        findings: set[str] = set()
        for annotation in report.mesh_major:
            finding, qualifiers = _parse_annotation(annotation)
            for term, role in qualifiers + ([(finding, "finding")] if finding else []):
                names.setdefault(code(term), term)
                roles.setdefault(code(term), set()).add(role)
            if finding is None:
                continue
            head = code(finding)
            findings.add(head)
            for term, role in qualifiers:
                if code(term) != head:
                    in_report.add((head, "located_at" if role == "anatomy" else "has_modifier", code(term)))
        in_report.update((a, "co_occurs_with", b) for a, b in combinations(sorted(findings), 2))
        support.update(in_report)

    concepts = [
        SourceConcept(SOURCE, c, name, semantic_types=sorted({TUI_BY_ROLE[r] for r in roles[c]}))
        for c, name in names.items()
    ]
    relations = [
        SourceRelation(f"{SOURCE}:{head}", relation, f"{SOURCE}:{tail}", SOURCE, support=n)
        for (head, relation, tail), n in sorted(support.items())
    ]
    return concepts, relations


def iter_reports(path: Path, problems: ProblemLog) -> Iterator[IUReport]:
    """Reports of `NLMCXR_reports.tgz` (streamed) or of a directory of its XML files.

    An XML file that does not parse is reported and skipped. An archive that is damaged, truncated or
    not an archive at all raises `MalformedInputError` naming it, whatever was read before: a partial
    read would otherwise pass for the whole collection."""
    for name, stream in _xml_files(path):
        try:
            root = ET.parse(stream).getroot()
        except ET.ParseError as e:
            problems.report(name, e.position[0], "xml", str(e))
            continue
        except ARCHIVE_ERRORS as e:  # a member cut short in a damaged archive
            raise damaged(path, f"at {name}: {e}") from e
        uid = root.find("uId")
        report_id = uid.get("id") if uid is not None else None
        if not report_id:
            problems.report(name, None, "missing id", "no <uId id=...>")
            continue
        yield IUReport(
            id=report_id,
            sections={
                label: text
                for element in root.iter("AbstractText")
                if (label := element.get("Label")) and (text := "".join(element.itertext()).strip())
            },
            mesh_major=_texts(root, "MeSH/major"),
            mesh_auto=_texts(root, "MeSH/automatic"),
            images=[image.get("id", "") for image in root.findall("parentImage") if image.get("id")],
        )


def code(term: str) -> str:
    """Code of an annotation term: lowercase, words joined by `_` ("Upper Lobe" -> "upper_lobe")."""
    return "_".join(term.lower().split())


def _parse_annotation(annotation: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(finding, [(qualifier, role)]) of one `<major>`; no finding for normal / no indexing."""
    parts = [" ".join(part.split()) for part in annotation.split("/")]
    parts = [part for part in parts if part]
    if not parts or parts[0].lower() in NOT_FINDINGS:
        return None, []
    roles = [_role(part) for part in parts]
    at = 0
    if roles[0] == "anatomy":
        at = next((i for i, part in enumerate(parts) if part.lower() in ABNORMALITY), -1)
    qualifiers = [(part, role) for i, (part, role) in enumerate(zip(parts, roles, strict=True)) if i != at]
    return (parts[at] if at >= 0 else None), qualifiers


def _role(term: str) -> str:
    lowered = term.lower()
    for role, vocabulary in (
        ("anatomy", ANATOMY),
        ("location", LOCATION),
        ("laterality", LATERALITY),
        ("severity", SEVERITY),
    ):
        if lowered in vocabulary:
            return role
    return "modifier"


def _texts(root: ET.Element, path: str) -> list[str]:
    return [text for element in root.findall(path) if (text := (element.text or "").strip())]


def _xml_files(path: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(name for problem reports, open binary stream) per XML file; tar members are read in order."""
    if path.is_dir():
        for file in sorted(path.rglob("*.xml")):
            with file.open("rb") as stream:
                yield str(file), stream
        return
    try:
        with _decompressed(path) as raw, tarfile.open(fileobj=raw, mode="r|") as archive:
            for member in archive:
                stream = archive.extractfile(member) if member.name.endswith(".xml") else None
                if stream is not None:
                    yield str(path / member.name), stream
            # tarfile takes an unreadable header for the end of the archive: only zero padding may follow
            # the end, and reading to the end makes gzip check its length and CRC.
            while chunk := archive.fileobj.read(1 << 16):
                if chunk.strip(b"\0"):
                    raise tarfile.ReadError(f"data after the last readable header, at byte {archive.offset:,} of the tar stream")
    except ARCHIVE_ERRORS as e:
        raise damaged(path, str(e) or type(e).__name__) from e


ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
_COMPRESSED = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))


def damaged(path: Path, reason: str) -> MalformedInputError:
    return MalformedInputError(f"{path}: damaged, truncated or not a tar archive ({reason})")


def _decompressed(path: Path) -> IO[bytes]:
    """The tar stream of a .tar, .tgz, .tar.bz2 or .tar.xz file, by its first bytes."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    opener = next((opener for prefix, opener in _COMPRESSED if magic.startswith(prefix)), None)
    return opener(path, "rb") if opener is not None else open(path, "rb")
