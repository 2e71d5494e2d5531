"""The scoring interface every link-prediction head shares, and the registry that names them.

torch-geometric's KGE models score one (h, r, t) triple at a time. Ranking against all entities, or
1-N training, would then need num_entities copies of every query, so each head here rewrites its
model as a query vector (the anchor entity moved by the relation) compared with candidate entity rows,
by a dot product or a distance. That form broadcasts over negatives and turns all-entity scoring into
one matrix product or `cdist`. A head is torch-geometric's own model class (parameters, initialisation
and layout unchanged, so its `forward` still scores triples) with these methods added.

Adding a head means one file: a subclass of `Head` decorated with `@register("name")`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import ModelConfig

HEADS: dict[str, type[Head]] = {}


def register(name: str):
    """Class decorator: make a head available as `--model name` (and behind GNN encoders as `rgcn-name`)."""

    def add(cls: type[Head]) -> type[Head]:
        cls.name = name
        HEADS[name] = cls
        return cls

    return add


class Head(nn.Module):
    """Entity rows in, scores out. `predict_tail` says which side a query predicts: True for (h, r, ?),
    whose anchor is h; False for (?, r, t), whose anchor is t; a bool for a batch or a bool tensor per row."""

    name: ClassVar[str] = ""
    complex_rows: ClassVar[bool] = False  # entity rows are [real | imaginary], 2 * dim wide
    takes_text_projection: ClassVar[bool] = True  # shallow rows may start from projected text features
    encodable: ClassVar[bool] = True  # may sit behind a GNN encoder

    @classmethod
    def build(cls, num_entities: int, num_relations: int, config: ModelConfig, features: Tensor | None) -> Head:
        return cls(num_entities, num_relations, config.dim, sparse=config.sparse, **cls.options(config))

    @classmethod
    def options(cls, config: ModelConfig) -> dict[str, Any]:
        """Keyword arguments of the torch-geometric constructor beyond the sizes."""
        return {"margin": config.margin}

    @classmethod
    def row_width(cls, dim: int) -> int:
        return dim * (2 if cls.complex_rows else 1)

    def entity_tables(self) -> list[nn.Embedding]:
        return [self.node_emb] + ([self.node_emb_im] if self.complex_rows else [])

    def entity_rows(self, ids: Tensor | None) -> Tensor:
        """Rows of `ids` (all rows for None), [real | imaginary] for complex heads; calling honours `sparse`."""
        parts = [t.weight if ids is None else t(ids) for t in self.entity_tables()]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def relation_rows(self, relations: Tensor) -> Tensor:
        return self.rel_emb(relations)

    def prepare(self, rows: Tensor) -> Tensor:
        """Entity rows as candidates, as the score sees them."""
        return rows

    def prepare_anchors(self, rows: Tensor) -> Tensor:
        """Entity rows as query anchors; the same as candidates unless a head says otherwise."""
        return self.prepare(rows)

    def query(self, anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
        raise NotImplementedError

    def similarity(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """Scores of broadcastable query and candidate rows (last dimension reduced); dot product by default."""
        return (queries * candidates).sum(dim=-1)

    def similarity_all(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """[B, N] scores of B queries against N candidates: a matrix product or `cdist`, no [B, N, D] tensor."""
        return queries @ candidates.T

    @property
    def matmul_scoring(self) -> bool:
        """Whether `similarity_all` is a matrix product (dot products, or L2 distances computed through one)."""
        return True

    @property
    def logit_offset(self) -> float:
        """Added to scores to make logits for the logistic losses."""
        return 0.0

    def vectors(self, table: Tensor) -> Tensor:
        """The concept vectors to export from an entity table."""
        return table

    def n3(self, rows: Tensor) -> Tensor:
        """Sum of cubed moduli (complex rows) or absolute values (N3, Lacroix et al., 2018)."""
        if self.complex_rows:
            re, im = rows.chunk(2, dim=-1)
            return (re**2 + im**2).pow(1.5).sum()
        return rows.abs().pow(3).sum()


def rotate_by(anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
    """Complex product a * r of [real | imaginary] rows, or a * conj(r) for head queries."""
    a_re, a_im = anchors.chunk(2, dim=-1)
    r_re, r_im = relations.chunk(2, dim=-1)
    if isinstance(predict_tail, Tensor):
        r_im = torch.where(predict_tail.unsqueeze(-1), r_im, -r_im)
    elif not predict_tail:
        r_im = -r_im
    return torch.cat([a_re * r_re - a_im * r_im, a_im * r_re + a_re * r_im], dim=-1)


def p_norm(x: Tensor, p: float) -> Tensor:
    """The p-norm over the last dimension; for p = 1 as abs().sum(), half the time of `vector_norm`
    forward and backward, which matters in TransE's small steps."""
    return x.abs().sum(dim=-1) if p == 1 else torch.linalg.vector_norm(x, ord=p, dim=-1)
