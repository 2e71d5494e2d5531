"""Relational GNN encoders: full-batch message passing over the training graph (each relation and its
inverse), entity rows in, contextual entity rows of the same width out, ReLU between layers.

Adding an encoder means one file: a subclass of `RelationalEncoder` that builds its layers, decorated
with `@register("name")`; it is then available before any head (`name-rotate`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig

ENCODERS: dict[str, type[RelationalEncoder]] = {}


def register(name: str):
    def add(cls: type[RelationalEncoder]) -> type[RelationalEncoder]:
        ENCODERS[name] = cls
        return cls

    return add


class RelationalEncoder(nn.Module):
    def __init__(self, width: int, num_relations: int, config: ModelConfig):
        super().__init__()
        self.convs = nn.ModuleList(self.layer(width, 2 * num_relations, config) for _ in range(config.encoder_layers))
        self.dropout = config.encoder_dropout

    def layer(self, width: int, relations: int, config: ModelConfig) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: Tensor, edge_index: Tensor, edge_type: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(F.dropout(x, self.dropout, self.training), edge_index, edge_type)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x
