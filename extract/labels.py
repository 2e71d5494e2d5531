"""Report-level labels (ChestX-ray14, CheXpert) from mentions.

The label-to-concept mapping is data (extract/data/label_sets/*.json) written with concept
names; it is resolved against the graph the index was built from, and a label covers its
concepts and everything below them on IS_A.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from kg.errors import InputError
from kg.problems import ProblemLog
from kg.tables import is_a_edges, reachable, read_tables

from .index import ConceptIndex
from .model import NOT_FINDINGS, Mention, Report

log = logging.getLogger(__name__)
CONTEXT_CHARS = 40
# Value of a label, from the strongest assertion among its mentions (CheXpert's rule).
PRESENT, UNCERTAIN, ABSENT, NOT_MENTIONED = "1", "-1", "0", ""


@dataclass(frozen=True)
class LabelRule:
    name: str
    concept_ids: frozenset[str]
    context: re.Pattern[str] | None


@dataclass(frozen=True)
class LabelSet:
    name: str
    rules: tuple[LabelRule, ...]
    normal_label: str
    normal_statements: re.Pattern[str]
    normal_ignores: frozenset[str]

    @property
    def columns(self) -> list[str]:
        return [r.name for r in self.rules] + [self.normal_label]


def label_set_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in files("extract").joinpath("data/label_sets").iterdir() if p.name.endswith(".json"))


def is_a_children(rrf_dir: Path) -> dict[str, list[str]]:
    return is_a_edges(read_tables(rrf_dir, ProblemLog()))


def load_label_set(name_or_path: str, index: ConceptIndex, rrf_dir: Path) -> LabelSet:
    path = Path(name_or_path)
    if path.suffix == ".json":
        spec = json.loads(path.read_text(encoding="utf-8-sig"))
    elif name_or_path in label_set_names():
        spec = json.loads(files("extract").joinpath(f"data/label_sets/{name_or_path}.json").read_text(encoding="utf-8"))
    else:
        raise InputError(f"unknown label set {name_or_path!r}: choose from {', '.join(label_set_names())} or give a .json file")
    children = is_a_children(rrf_dir)
    rules = []
    for label, entry in spec["labels"].items():
        ids: set[str] = set()
        for names, with_descendants in ((entry.get("concepts", []), True), (entry.get("exact", []), False)):
            for concept_name in names:
                concept_id = index.resolve(concept_name)
                if concept_id is None:
                    log.warning("label %s: the graph has no concept named %r", label, concept_name)
                    continue
                ids |= reachable(concept_id, children) if with_descendants else {concept_id}
        context = re.compile(entry["context"], re.I) if entry.get("context") else None
        rules.append(LabelRule(label, frozenset(ids), context))
    normal = spec["normal"]
    statements = re.compile(r"\b(?:" + "|".join(normal["statements"]) + r")\b", re.I)
    return LabelSet(spec["name"], tuple(rules), normal["label"], statements, frozenset(normal.get("ignore", ())))


def label_report(report: Report, mentions: list[Mention], label_set: LabelSet) -> dict[str, str]:
    """One value per label; INDICATION and HISTORY mentions are not findings and never count."""
    values: dict[str, str] = {}
    findings = [m for m in mentions if m.is_finding]
    for rule in label_set.rules:
        states = {
            m.assertion for m in findings
            if m.id in rule.concept_ids
            and (rule.context is None or rule.context.search(report.text, max(0, m.start - CONTEXT_CHARS), m.end + CONTEXT_CHARS))
        }
        values[rule.name] = (PRESENT if "present" in states else UNCERTAIN if "uncertain" in states
                             else ABSENT if "absent" in states else NOT_MENTIONED)
    abnormal = any(v in (PRESENT, UNCERTAIN) for k, v in values.items() if k not in label_set.normal_ignores)
    stated = any(label_set.normal_statements.search(report.text, s.start, s.end)
                 for s in report.sections if s.name not in NOT_FINDINGS) if report.sections else \
        bool(label_set.normal_statements.search(report.text))
    values[label_set.normal_label] = PRESENT if stated and not abnormal else NOT_MENTIONED
    return values
