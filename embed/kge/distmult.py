"""DistMult (Yang et al., 2015): a diagonal bilinear score <h, r, t>."""

from __future__ import annotations

from torch import Tensor
from torch_geometric.nn import kge

from .base import Head, register


@register("distmult")
class DistMult(kge.DistMult, Head):
    def query(self, anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
        return anchors * relations
