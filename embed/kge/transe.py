"""TransE (Bordes et al., 2013): h + r close to t, entities normalised; score -||h + r - t||_p."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn import kge

from ..config import ModelConfig
from .base import Head, p_norm, register


@register("transe")
class TransE(kge.TransE, Head):
    @classmethod
    def options(cls, config: ModelConfig) -> dict[str, Any]:
        return {"margin": config.margin, "p_norm": config.p_norm}

    def prepare(self, rows: Tensor) -> Tensor:
        return rows / p_norm(rows, self.p_norm).unsqueeze(-1).clamp_min(1e-12)  # F.normalize, faster

    def query(self, anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
        if isinstance(predict_tail, Tensor):
            return anchors + torch.where(predict_tail, 1.0, -1.0).unsqueeze(-1) * relations
        return anchors + relations if predict_tail else anchors - relations

    def similarity(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return -p_norm(queries - candidates, self.p_norm)

    def similarity_all(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return -torch.cdist(queries, candidates, p=self.p_norm)

    @property
    def matmul_scoring(self) -> bool:
        return self.p_norm == 2

    @property
    def logit_offset(self) -> float:
        return self.margin  # the score is -distance; logits are margin - distance
