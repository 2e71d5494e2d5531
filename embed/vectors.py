"""Exported concept vectors: `concept_vectors.safetensors` (one [N, D] tensor named `vectors`) beside
`concept_ids.json` (a JSON list; row i is the vector of concept ids[i]).

`medkg embed export` writes the pair; anything that consumes concept vectors (the aligner's entity
similarities, fusion inputs) reads it back with `read_vectors`. The two files are written one after the
other, each atomically; the safetensors metadata records how many ids there are and a digest of them, so a
pair torn apart (one file replaced, the other not) is refused instead of silently misaligning rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor

from kg.atomic import atomic_open
from kg.errors import DamagedFileError, MissingInputError

VECTORS = "concept_vectors.safetensors"
IDS = "concept_ids.json"
TENSOR = "vectors"


@dataclass
class ConceptVectors:
    ids: list[str]
    vectors: Tensor  # [N, D], row i belongs to ids[i]
    metadata: dict[str, str] = field(default_factory=dict)
    _rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.vectors.dim() != 2 or self.vectors.shape[0] != len(self.ids):
            raise ValueError(f"{len(self.ids)} ids but vectors of shape {tuple(self.vectors.shape)}")
        self._rows = {concept_id: i for i, concept_id in enumerate(self.ids)}
        if len(self._rows) != len(self.ids):
            raise ValueError("concept ids repeat: each concept must have exactly one row")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self._rows

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def index(self, concept_id: str) -> int:
        try:
            return self._rows[concept_id]
        except KeyError:
            raise KeyError(f"no vector for concept {concept_id!r}") from None

    def row(self, concept_id: str) -> Tensor:
        """The [D] vector of one concept; KeyError naming it when there is none."""
        return self.vectors[self.index(concept_id)]

    def rows(self, concept_ids: Iterable[str]) -> Tensor:
        """[len(concept_ids), D] in the order given; KeyError naming the first concept without a vector."""
        return self.vectors[torch.tensor([self.index(c) for c in concept_ids], dtype=torch.long)]


def ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def write_vectors(out_dir: Path, ids: Sequence[str], vectors: Tensor,
                  metadata: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """Write the pair into `out_dir` (each file atomically, the vectors first); returns (vectors path, ids path)."""
    ids = list(ids)
    vectors = vectors.detach().float().cpu().contiguous()
    if vectors.dim() != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but vectors of shape {tuple(vectors.shape)}")
    if len(set(ids)) != len(ids):
        raise ValueError("concept ids repeat: each concept must have exactly one row")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = {**{k: str(v) for k, v in (metadata or {}).items()}, "concepts": str(len(ids)), "ids_digest": ids_digest(ids)}
    with atomic_open(out_dir / VECTORS, "wb") as f:
        f.write(save({TENSOR: vectors}, metadata=stamp))
    with atomic_open(out_dir / IDS) as f:
        json.dump(ids, f)
    return out_dir / VECTORS, out_dir / IDS


def vector_paths(directory_or_file: Path) -> tuple[Path, Path]:
    """(vectors, ids) for a directory holding the pair, or for either file of it."""
    path = Path(directory_or_file)
    if path.is_dir():
        return path / VECTORS, path / IDS
    if path.suffix == ".json":
        return path.with_name(VECTORS), path
    return path, path.with_name(IDS)


def read_vectors(directory_or_file: Path) -> ConceptVectors:
    """The vectors and ids written by `write_vectors` (or `medkg embed export`), checked against each other.

    FileNotFoundError names a missing file; ValueError names a damaged one, or both when they disagree."""
    vectors_path, ids_path = vector_paths(directory_or_file)
    for path in (vectors_path, ids_path):
        if not path.is_file():
            raise MissingInputError(f"concept vectors file is missing: {path} (write it with `medkg embed export`)")
    try:
        data = vectors_path.read_bytes()
        tensors = load(data)
        metadata = _safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError) as error:
        raise DamagedFileError(f"{vectors_path}: not a readable safetensors file ({error})") from None
    if TENSOR not in tensors or tensors[TENSOR].dim() != 2:
        raise DamagedFileError(f"{vectors_path}: expected a 2-D tensor named {TENSOR!r}, found {sorted(tensors) or 'nothing'}")
    try:
        ids = json.loads(ids_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(f"{ids_path}: not a JSON list of concept ids ({error})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DamagedFileError(f"{ids_path}: not a JSON list of concept ids")
    vectors = tensors[TENSOR]
    if len(ids) != vectors.shape[0]:
        raise DamagedFileError(f"{ids_path} lists {len(ids):,} concept ids but {vectors_path} has {vectors.shape[0]:,} rows: "
                         "the two files are not from the same export")
    if "ids_digest" in metadata and metadata["ids_digest"] != ids_digest(ids):
        raise DamagedFileError(f"{ids_path} does not list the concepts {vectors_path} was written for: "
                         "the two files are not from the same export")
    if len(set(ids)) != len(ids):
        raise DamagedFileError(f"{ids_path}: concept ids repeat")
    return ConceptVectors(ids, vectors, metadata)


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])
    return dict(header.get("__metadata__") or {})
