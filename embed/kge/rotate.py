"""RotatE (Sun et al., 2019): the relation rotates the head in the complex plane; score
margin - ||h * r - t||. Rotations have modulus 1, so t * conj(r) is the head that h * r = t needs."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import kge

from .base import Head, register, rotate_by


@register("rotate")
class RotatE(kge.RotatE, Head):
    complex_rows = True

    def relation_rows(self, relations: Tensor) -> Tensor:
        phase = self.rel_emb(relations)
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)

    def query(self, anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
        return rotate_by(anchors, relations, predict_tail)

    def similarity(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return self.margin - (queries - candidates).norm(p=2, dim=-1)

    def similarity_all(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return self.margin - torch.cdist(queries, candidates)
