"""RGCN (Schlichtkrull et al., 2018): torch-geometric's `RGCNConv`, a weight per relation, basis-decomposed."""

from __future__ import annotations

from torch import nn
from torch_geometric.nn import RGCNConv

from ..config import ModelConfig
from .base import RelationalEncoder, register


@register("rgcn")
class RGCN(RelationalEncoder):
    def layer(self, width: int, relations: int, config: ModelConfig) -> nn.Module:
        return RGCNConv(width, width, relations, num_bases=config.encoder_bases)
