"""ComplEx (Trouillon et al., 2016): Re(<h, r, conj(t)>) over complex rows [real | imaginary]."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn import kge

from ..config import ModelConfig
from .base import Head, register, rotate_by


@register("complex")
class ComplEx(kge.ComplEx, Head):
    complex_rows = True

    @classmethod
    def options(cls, config: ModelConfig) -> dict[str, Any]:
        return {}

    def relation_rows(self, relations: Tensor) -> Tensor:
        return torch.cat([self.rel_emb(relations), self.rel_emb_im(relations)], dim=-1)

    def query(self, anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
        return rotate_by(anchors, relations, predict_tail)
