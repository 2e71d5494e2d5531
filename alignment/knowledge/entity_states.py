"""What each report and each image says about each entity: int64 [items, K] tensors of `alignment.states`.

Reports: CheXpert's rule, through `extract.labels.label_report` itself (every entity becomes a rule; label entities
keep their context patterns): PRESENT if a finding mention of a covered concept is present, else UNCERTAIN if one is
uncertain, else ABSENT if one is absent, else UNKNOWN. Mentions in INDICATION and HISTORY never count.

Normal statements. A report whose findings state normality ("no acute cardiopulmonary disease", "lungs are clear",
the label set's `normal` statements) and that has no label entity present or uncertain (the label set's `ignore`
labels, e.g. CheXpert's Support Devices, aside) is normal, exactly as `label_report` decides its normal column. Its
unmentioned label entities are then ABSENT instead of UNKNOWN: the radiologist looked and found none of them. This
doubles the absent evidence for the rarer labels (most IU reports state normality and name only a few findings), and it
is the convention of NIH ChestX-ray14, whose "No Finding" images are negative for every label. Ignored labels and extra
entities stay UNKNOWN: "no acute disease" says nothing of a pacemaker, an old granuloma or degenerative spine changes.
The rule needs the report text (a `Report` with sections, as `ensure_assets` keeps them); reports given by id alone get
no context or normal rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from alignment.states import ABSENT, PRESENT, UNCERTAIN, UNKNOWN
from extract.labels import ABSENT as LABEL_ABSENT
from extract.labels import NOT_MENTIONED, label_report
from extract.labels import PRESENT as LABEL_PRESENT
from extract.labels import UNCERTAIN as LABEL_UNCERTAIN
from kg.errors import InputError

from .assets import ReportMentions, report_mentions
from .vocabulary import EntityVocabulary

STATE_OF_VALUE = {LABEL_PRESENT: PRESENT, LABEL_UNCERTAIN: UNCERTAIN, LABEL_ABSENT: ABSENT, NOT_MENTIONED: UNKNOWN}
KNOWN = frozenset({ABSENT, PRESENT, UNCERTAIN, UNKNOWN})


def report_states(mentions_by_report: ReportMentions, vocab: EntityVocabulary,
                  normal_absent: bool = True) -> tuple[list[str], Tensor]:
    """(report ids, int64 [R, K]) for a mapping id -> mentions, or (Report | id, mentions) pairs, in their order.
    With `normal_absent` (the default), a normal report's unmentioned label entities are ABSENT (module docstring)."""
    label_set = vocab.label_set_rules()
    names = [rule.name for rule in label_set.rules]
    fill = torch.tensor([label is not None and label not in vocab.normal_ignores for label in vocab.labels])
    ids: list[str] = []
    rows: list[list[int]] = []
    for report, mentions in report_mentions(mentions_by_report):
        values = label_report(report, mentions, label_set)
        ids.append(report.id)
        rows.append([STATE_OF_VALUE[values[name]] for name in names])
        if normal_absent and values[label_set.normal_label] == LABEL_PRESENT:
            row = torch.tensor(rows[-1])
            rows[-1] = torch.where(fill & (row == UNKNOWN), ABSENT, row).tolist()
    return ids, torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(vocab))


def image_states(images: Iterable[Any], vocab: EntityVocabulary) -> Tensor:
    """int64 [N, K]: label entities from each image's `labels` (a dict label -> state, read from a `labels` attribute or
    key), UNKNOWN where an image has no value; extra entities UNKNOWN. Label names match ignoring case, spaces and
    underscores ("Pleural_Thickening" = "pleural thickening"). An image whose normal label ("No Finding") is PRESENT has
    its missing label entities ABSENT, as a normal report does. States must be `alignment.states` values."""
    column = {_key(label): k for k, label in enumerate(vocab.labels) if label is not None}
    normal = _key(vocab.normal_label) if vocab.normal_label else None
    fill = torch.tensor([label is not None and label not in vocab.normal_ignores for label in vocab.labels])
    rows = []
    for number, image in enumerate(images):
        labels = image["labels"] if isinstance(image, Mapping) else image.labels
        row = torch.full((len(vocab),), UNKNOWN, dtype=torch.long)
        is_normal = False
        for label, state in labels.items():
            if int(state) not in KNOWN or isinstance(state, bool):
                raise InputError(f"image {number}: label {label!r} has state {state!r}, not one of alignment.states")
            key = _key(label)
            if key in column:
                row[column[key]] = int(state)
            elif key == normal:
                is_normal = int(state) == PRESENT
        if is_normal:
            row = torch.where(fill & (row == UNKNOWN), ABSENT, row)
        rows.append(row)
    return torch.stack(rows) if rows else torch.empty(0, len(vocab), dtype=torch.long)


def _key(label: str) -> str:
    return "".join(label.replace("_", " ").lower().split())
