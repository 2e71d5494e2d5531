"""Train / valid / test by patient: no patient's images or reports are on two sides, so test scores are not inflated
by the model having seen the same chest.

Each patient goes to a side by a hash of (seed, patient id) read as a number in [0, 1), not by shuffling the list:
a patient's side then depends on nothing but its id, so adding records (a new dataset release, another folder)
never moves a patient already assigned and a test set stays a test set. The fractions hold in expectation over
patients, not exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import TypeVar

from alignment.data.records import ImageRecord, ReportRecord

R = TypeVar("R", ImageRecord, ReportRecord)
SIDES = ("train", "valid", "test")


def patient_split(records: Iterable[R], fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0) -> dict[str, list[R]]:
    """{"train", "valid", "test"}: the records of each side, in input order. A report without a patient counts as
    a patient of its own (its id)."""
    if len(fractions) != len(SIDES) or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be {len(SIDES)} non-negative numbers for {SIDES} summing to 1, got {fractions}")
    split: dict[str, list[R]] = {side: [] for side in SIDES}
    for record in records:
        split[side_of(_patient(record), fractions, seed)].append(record)
    return split


def side_of(patient: str, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 0) -> str:
    """The side of one patient: for items that are not records (a report known by its id alone)."""
    bounds = [sum(fractions[: i + 1]) for i in range(len(SIDES) - 1)]
    return SIDES[sum(_unit(seed, patient) >= bound for bound in bounds)]


def assert_disjoint(split: dict[str, list[R]]) -> None:
    """Raises AssertionError naming the patients found on two sides (a split made some other way, or edited)."""
    side_of: dict[str, str] = {}
    shared: set[str] = set()
    for side, records in split.items():
        for record in records:
            patient = _patient(record)
            if side_of.setdefault(patient, side) != side:
                shared.add(patient)
    if shared:
        raise AssertionError(f"{len(shared)} patients on more than one side, e.g. {sorted(shared)[:5]}")


def _patient(record: ImageRecord | ReportRecord) -> str:
    return record.patient if record.patient is not None else record.id  # type: ignore[union-attr]  # only reports lack one


def _unit(seed: int, patient: str) -> float:
    """A number in [0, 1) fixed by (seed, patient): the first 8 bytes of a SHA-256 (stable across runs and machines,
    unlike Python's `hash`)."""
    digest = hashlib.sha256(f"{seed}\0{patient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
