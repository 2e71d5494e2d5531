"""Zero-shot prompts from the knowledge graph, and the one vector each class of prompts is scored by.

A dataset label (in the dataset's spelling: "Effusion", "Pleural Effusion") stands for one of the model's entities:
the entity whose label, readable name or synonym it is, ignoring case, spaces, underscores and plurals
(`entity_rows`), so that a model trained on ChestX-ray14 labels also reads CheXpert's "Pleural Effusion".

The prompts of an entity (`label_prompts`):
- positive: its readable name ("pleural effusion"), its synonyms (`EntityVocabulary.synonyms`: "hiatus hernia"),
  and the name qualified by each IS_A parent in the graph ("pleural effusion, a kind of pleural diseases"; at most
  MAX_PARENTS, names with commas or brackets, inverted forms, left out);
- negative: each positive prompt negated ("no pleural effusion", ...), so the two classes differ by the negation.
A parent is a qualifier, never a prompt of its own: bare parents are shared ("lesion" is the parent of both Mass
and Nodule, "enhancement" of Infiltrate) and would pull different labels onto one vector.

Each class is embedded once (`class_vectors`): the mean of its prompts' unit vectors, renormalised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import Tensor

from kg.normalize import name_key
from kg.problems import ProblemLog
from kg.tables import is_a_edges, read_tables

from .knowledge import EntityVocabulary

MAX_PARENTS = 3


@dataclass(frozen=True)
class LabelPrompts:
    label: str              # the dataset's spelling
    entity: int             # row of the label's entity among the model's entities (`AlignmentModel.entity_names`)
    name: str               # the entity's readable name
    positive: list[str]
    negative: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def label_key(text: str) -> str:
    """Case-, space-, underscore-, punctuation- and plural-insensitive ("Pleural_Thickening" = "pleural thickening")."""
    return name_key(text.replace("_", " ")).replace(" ", "")


def entity_rows(labels: list[str], vocabulary: EntityVocabulary, entity_names: list[str]) -> tuple[dict[str, int], list[str]]:
    """({label: vocabulary row} for the labels some entity of the model stands for, [labels none does]).

    A label matches an entity's label first, then its name, then a synonym; only entities the model has (by name)
    count."""
    usable = [r for r, name in enumerate(vocabulary.names) if name in set(entity_names)]
    keys: list[dict[str, int]] = [{}, {}, {}]
    for r in usable:
        if vocabulary.labels[r] is not None:
            keys[0].setdefault(label_key(vocabulary.labels[r]), r)
        keys[1].setdefault(label_key(vocabulary.names[r]), r)
        for synonym in vocabulary.synonyms[r]:
            keys[2].setdefault(label_key(synonym), r)
    found, missing = {}, []
    for label in labels:
        row = next((k[label_key(label)] for k in keys if label_key(label) in k), None)
        if row is None:
            missing.append(label)
        else:
            found[label] = row
    return found, missing


def concept_parents(kg_dir: Path, concept_ids: list[str]) -> dict[str, list[str]]:
    """The readable names of each concept's IS_A parents in the graph of `kg_dir`, in the graph's order, without
    repeats, inverted or qualified forms ("Fractures, Bone", "... (disorder)")."""
    tables = read_tables(Path(kg_dir), ProblemLog())
    upward = is_a_edges(tables, upward=True)
    wanted = sorted({p for c in concept_ids for p in upward.get(c, [])})
    concepts = tables.concepts
    rows = concepts.filter(pc.is_in(concepts["id"], value_set=pa.array(wanted, pa.string()))).select(["id", "name"])
    name_of = dict(zip(rows["id"].to_pylist(), rows["name"].to_pylist()))
    result: dict[str, list[str]] = {}
    for concept_id in concept_ids:
        seen: set[str] = set()
        names = []
        for parent in upward.get(concept_id, []):
            name = name_of.get(parent) or ""
            if not name or any(c in name for c in ",()[]") or name_key(name) in seen:
                continue
            seen.add(name_key(name))
            names.append(readable(name))
        result[concept_id] = names
    return result


def readable(name: str) -> str:
    """Lower case, keeping acronyms ("Pleural Diseases" -> "pleural diseases", "COPD" stays)."""
    return " ".join(word if len(word) > 1 and word.isupper() else word.lower() for word in name.split())


def prompts_for(name: str, synonyms: list[str], parents: list[str]) -> tuple[list[str], list[str]]:
    """(positive, negative) prompts of one entity (see the module docstring)."""
    positive, seen = [], set()
    candidates = [name, *synonyms, *(f"{name}, a kind of {parent}" for parent in parents[:MAX_PARENTS])]
    for text in candidates:
        if text and text.lower() not in seen:
            seen.add(text.lower())
            positive.append(text)
    return positive, [f"no {text}" for text in positive]


def label_prompts(rows: dict[str, int], vocabulary: EntityVocabulary, entity_names: list[str],
                  kg_dir: Path) -> list[LabelPrompts]:
    """The prompts of each label of `rows` ({label: vocabulary row}, from `entity_rows`), in its order."""
    parents = concept_parents(kg_dir, [vocabulary.ids[r] for r in rows.values()])
    result = []
    for label, r in rows.items():
        positive, negative = prompts_for(vocabulary.names[r], vocabulary.synonyms[r], parents[vocabulary.ids[r]])
        result.append(LabelPrompts(label, entity_names.index(vocabulary.names[r]), vocabulary.names[r], positive, negative))
    return result


@torch.no_grad()
def class_vectors(model, prompts: list[LabelPrompts], batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """(positive [L, E], negative [L, E]) unit vectors: each class's prompts embedded by the model's text side
    (`encode_text(...).global_`, unit vectors), averaged, renormalised. Every prompt is encoded once."""
    texts = [t for p in prompts for t in (*p.positive, *p.negative)]
    vectors = torch.cat([model.encode_text(texts[i:i + batch_size]).global_.float()
                         for i in range(0, len(texts), batch_size)]) if texts else torch.zeros(0)
    positive, negative, start = [], [], 0
    for p in prompts:
        pos = vectors[start:start + len(p.positive)]
        neg = vectors[start + len(p.positive):start + len(p.positive) + len(p.negative)]
        start += len(p.positive) + len(p.negative)
        positive.append(F.normalize(pos.mean(0), dim=-1))
        negative.append(F.normalize(neg.mean(0), dim=-1))
    return torch.stack(positive), torch.stack(negative)
