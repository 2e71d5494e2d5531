"""The entities the aligner reasons about: a label set's labels first, then the report corpus's most frequent findings.

Label entities come from `extract/data/label_sets/<name>.json` resolved against the graph by
`extract.labels.load_label_set`: each covers its concepts and their IS_A descendants (plus its `exact` concepts), and
keeps the label's context pattern and the set's normal statement, so that `report_states` applies the same rules as
`medkg extract labels`. An entity's concept is the label's first resolvable concept (`concepts`, else `exact`); its
readable name is that concept's name in lower case ("Effusion" -> "pleural effusion"), except for a label that needs a
context (its concept is generic: "thickening" near "pleura"), which is named after the label ("pleural thickening").

Extra entities are the `extra` finding concepts (semantic group DISO, in a finding section: not INDICATION or HISTORY)
mentioned in the most reports, leaving out
- concepts a label already covers ("left basilar atelectasis" counts as Atelectasis, not as an entity of its own);
- umbrella concepts above the concepts of two or more labels ("disease", "lung diseases", "lesion"): they say less
  than the labels below them;
- concepts stated present or uncertain in fewer than `min_positive` reports: in IU X-ray, "no acute cardiopulmonary
  disease" gives thousands of absent "cor pulmonale" and "acute disease" mentions, which describe the normal statement,
  not a finding an image could show.
An extra entity covers its concept and its IS_A descendants.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from extract.index import ConceptIndex
from extract.labels import LabelRule, LabelSet, label_set_names, load_label_set
from extract.model import ASSERTIONS
from kg.atomic import atomic_open
from kg.errors import DamagedFileError, InputError
from kg.normalize import name_key
from kg.problems import ProblemLog
from kg.tables import GraphTables, is_a_edges, reachable, read_tables

from .assets import ReportMentions, report_mentions

log = logging.getLogger(__name__)
FINDING_GROUP = "DISO"
MAX_SYNONYMS = 4
MAX_SYNONYM_WORDS = 3
VERSION = 1


@dataclass
class EntityVocabulary:
    label_set: str
    ids: list[str]  # concept id of each entity
    names: list[str]  # readable name (the text the entity is encoded from)
    labels: list[str | None]  # the dataset label an entity stands for; None for extra entities
    label_concepts: list[frozenset[str]]  # the concepts each entity covers: its own, and their IS_A descendants
    contexts: list[str | None] = field(default_factory=list)  # regex that must match near a mention (label rules)
    synonyms: list[list[str]] = field(default_factory=list)  # other names of the entity's concept
    reports: list[int] = field(default_factory=list)  # corpus reports whose findings mention a covered concept (contexts aside)
    normal_label: str | None = None  # the label set's normal label ("normal", "No Finding")
    normal_statements: str | None = None  # regex of statements of normality
    normal_ignores: frozenset[str] = frozenset()  # labels that a normal statement does not rule out (support devices)

    def __post_init__(self) -> None:
        k = len(self.ids)
        self.contexts = self.contexts or [None] * k
        self.synonyms = self.synonyms or [[] for _ in range(k)]
        self.reports = self.reports or [0] * k
        self.label_concepts = [frozenset(c) for c in self.label_concepts]
        self.normal_ignores = frozenset(self.normal_ignores)
        lengths = {len(x) for x in (self.names, self.labels, self.label_concepts, self.contexts, self.synonyms, self.reports)}
        if lengths != {k}:
            raise ValueError(f"entity vocabulary fields disagree in length: {k} ids, others {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_labels(self) -> int:
        """Label entities come first: entities 0..num_labels-1."""
        return sum(label is not None for label in self.labels)

    def index(self, label_or_id: str) -> int:
        """The entity of a label name or a concept id."""
        for i, (label, concept_id) in enumerate(zip(self.labels, self.ids)):
            if label_or_id in (label, concept_id):
                return i
        raise KeyError(f"{label_or_id!r} is neither a label nor an entity concept of this vocabulary")

    def label_set_rules(self) -> LabelSet:
        """Every entity as a rule of `extract.labels` (label entities with their contexts), so `label_report` computes
        all states; extra entities never decide whether a report is normal."""
        rules = tuple(LabelRule(label or concept_id, concepts, _compile(context))
                      for label, concept_id, concepts, context in zip(self.labels, self.ids, self.label_concepts, self.contexts))
        extras = {concept_id for label, concept_id in zip(self.labels, self.ids) if label is None}
        statements = _compile(self.normal_statements) or _compile(r"(?!)")  # (?!) never matches
        return LabelSet(self.label_set, rules, self.normal_label or "normal", statements, self.normal_ignores | extras)

    def save(self, path: Path) -> None:
        data = {"version": VERSION, **asdict(self)}
        data["label_concepts"] = [sorted(c) for c in self.label_concepts]
        data["normal_ignores"] = sorted(self.normal_ignores)
        with atomic_open(Path(path)) as f:
            json.dump(data, f, indent=1)

    @classmethod
    def load(cls, path: Path) -> EntityVocabulary:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.pop("version", None) != VERSION:
                raise DamagedFileError(f"not an entity vocabulary of version {VERSION}")
            return cls(**data)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
            raise DamagedFileError(f"{path}: not a readable entity vocabulary ({error})") from None


def build_vocabulary(label_set_name: str, kg_dir: Path, index: ConceptIndex, mentions: ReportMentions, extra: int = 16,
                     min_positive: int = 5) -> EntityVocabulary:
    """The label set's labels, then the `extra` most frequent finding concepts of `mentions` (see the module docstring)."""
    kg_dir = Path(kg_dir)
    label_set = load_label_set(label_set_name, index, kg_dir)
    tables = read_tables(kg_dir, ProblemLog())
    children = is_a_edges(tables)
    spec = _label_spec(label_set_name)
    found = [[m for m in ms if m.is_finding and m.assertion in ASSERTIONS] for _, ms in report_mentions(mentions)]

    ids, names, labels, covers, contexts = [], [], [], [], []
    for rule in label_set.rules:
        entry = spec["labels"][rule.name]
        concept_id = next((c for n in entry.get("concepts", []) + entry.get("exact", []) if (c := index.resolve(n))), None)
        if concept_id is None or not rule.concept_ids:
            raise InputError(f"label {rule.name!r} of {label_set_name}: the graph of {kg_dir} has none of its concepts")
        ids.append(concept_id)
        names.append(rule.name.replace("_", " ").lower() if rule.context else _readable(index.concepts[concept_id].name))
        labels.append(rule.name)
        covers.append(rule.concept_ids)
        contexts.append(rule.context.pattern if rule.context else None)
    covered = frozenset().union(*covers)
    umbrellas = _umbrellas(covers, children)

    mentioned, positive = Counter(), Counter()
    for ms in found:
        candidates = {m.id for m in ms if m.id not in covered and _group(index, m.id) == FINDING_GROUP}
        mentioned.update(candidates)
        positive.update({m.id for m in ms if m.id in candidates and m.assertion != "absent"})
    ranked = sorted((c for c in mentioned if c not in umbrellas and c not in ids and positive[c] >= min_positive),
                    key=lambda c: (-mentioned[c], c))
    for concept_id in ranked[:extra]:
        ids.append(concept_id)
        names.append(_readable(index.concepts[concept_id].name))
        labels.append(None)
        covers.append(frozenset(reachable(concept_id, children)))
        contexts.append(None)
    if len(ranked) < extra:
        log.warning("only %d finding concepts qualify as extra entities (%d asked for)", len(ranked), extra)

    reports = [sum(any(m.id in cover for m in ms) for ms in found) for cover in covers]
    synonyms = [[] if context else words for words, context in zip(_synonyms(ids, names, tables, index), contexts)]
    return EntityVocabulary(label_set.name, ids, names, labels, covers, contexts, synonyms, reports,
                            label_set.normal_label, label_set.normal_statements.pattern, label_set.normal_ignores)


def _label_spec(name_or_path: str) -> dict:
    """The label set's JSON (the same resolution as `extract.labels.load_label_set`)."""
    if Path(name_or_path).suffix == ".json":
        return json.loads(Path(name_or_path).read_text(encoding="utf-8"))
    if name_or_path not in label_set_names():
        raise InputError(f"unknown label set {name_or_path!r}: choose from {', '.join(label_set_names())} or give a .json file")
    return json.loads(files("extract").joinpath(f"data/label_sets/{name_or_path}.json").read_text(encoding="utf-8"))


def _umbrellas(covers: list[frozenset[str]], children: dict[str, list[str]]) -> set[str]:
    """Concepts with the concepts of two or more labels below them on IS_A."""
    parents: dict[str, list[str]] = {}
    for parent, kids in children.items():
        for kid in kids:
            parents.setdefault(kid, []).append(parent)
    above: Counter[str] = Counter()
    for cover in covers:
        ancestors: set[str] = set()
        stack = list(cover)
        while stack:
            for parent in parents.get(stack.pop(), ()):
                if parent not in ancestors:
                    ancestors.add(parent)
                    stack.append(parent)
        above.update(ancestors - cover)
    return {concept_id for concept_id, n in above.items() if n >= 2}


def _group(index: ConceptIndex, concept_id: str) -> str:
    info = index.concepts.get(concept_id)
    return info.group if info is not None else ""


def _readable(name: str) -> str:
    """Lower case, keeping acronyms ("Airspace Disease" -> "airspace disease", "COPD" stays)."""
    return " ".join(word if len(word) > 1 and word.isupper() else word.lower() for word in name.split())


def _synonyms(ids: list[str], names: list[str], tables: GraphTables, index: ConceptIndex) -> list[list[str]]:
    """Up to MAX_SYNONYMS other names of each concept that the index also knows as names of it (leaving out CheXpert's
    trigger stems such as "atelecta", which the index does not hold), in plain word order: no inverted or qualified
    forms ("hernia, hiatal", "... (disorder)") and at most MAX_SYNONYM_WORDS words (longer ones are mostly narrower
    terms a merge brought in: "lumbar spondylosis with myelopathy")."""
    concepts = tables.concepts
    rows = pc.index_in(concepts["id"], value_set=pa.array(ids, pa.string()))
    wanted = concepts.filter(pc.is_valid(rows)).select(["id", "name", "synonyms"]).to_pylist()
    by_id = {row["id"]: [row["name"], *(row["synonyms"] or [])] for row in wanted}
    result = []
    for concept_id, name in zip(ids, names):
        seen, kept = {name_key(name)}, []
        for synonym in by_id.get(concept_id, []):
            key = name_key(synonym)
            plain = not any(c in synonym for c in ",()[]") and len(synonym.split()) <= MAX_SYNONYM_WORDS
            if plain and key and key not in seen and concept_id in index.terms.get(key, ()):
                seen.add(key)
                kept.append(_readable(synonym))
        result.append(kept[:MAX_SYNONYMS])
    return result


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern, re.I) if pattern else None
