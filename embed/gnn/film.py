"""FiLM (Brockschmidt, 2020): torch-geometric's `FiLMConv`, messages modulated feature-wise by the
relation, the relation-aware alternative to CompGCN that torch-geometric ships."""

from __future__ import annotations

from torch import nn
from torch_geometric.nn import FiLMConv

from ..config import ModelConfig
from .base import RelationalEncoder, register


@register("film")
class FiLM(RelationalEncoder):
    def layer(self, width: int, relations: int, config: ModelConfig) -> nn.Module:
        return FiLMConv(width, width, relations, act=None)  # signed outputs, as KGE scores need
