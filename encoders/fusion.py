"""Knowledge fusion for text (ERNIE, Zhang et al. 2019): token features and the embeddings of the concepts
the tokens mention are mixed in one hidden layer, then read back out as both.

For token j with token features w_j and, inside a linked mention, entity embedding e_j:
    h_j = act(W_t w_j + W_e e_j + b)      (act(W_t w_j + b) outside mentions)
    w'_j = LayerNorm(w_j + act(W_t' h_j + b_t'))
    e'_j = LayerNorm(e_j + act(W_e' h_j + b_e'))   (zero outside mentions)
ERNIE's aggregator returns new token and entity features the same way; the residual carries the text
encoder's own features through, so the fusion adds knowledge to them rather than replacing them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from transformers.activations import ACT2FN


@dataclass
class FusionConfig:
    text_dim: int
    entity_dim: int
    hidden_dim: int = 0  # 0 = text_dim
    activation: str = "gelu"  # a transformers activation name
    dropout: float = 0.1


class KnowledgeFusion(nn.Module):
    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dim or config.text_dim
        self.text_in = nn.Linear(config.text_dim, hidden)  # W_t and the shared bias b
        self.entity_in = nn.Linear(config.entity_dim, hidden, bias=False)  # W_e
        self.text_out = nn.Linear(hidden, config.text_dim)
        self.entity_out = nn.Linear(hidden, config.entity_dim)
        self.text_norm = nn.LayerNorm(config.text_dim)
        self.entity_norm = nn.LayerNorm(config.entity_dim)
        self.act = ACT2FN[config.activation]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: Tensor, entities: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """`tokens` [B, T, text_dim], `entities` [B, T, entity_dim] aligned to tokens, `mask` [B, T] (true
        inside a linked mention) -> fused tokens [B, T, text_dim] and entities [B, T, entity_dim]."""
        mask = mask.unsqueeze(-1).to(tokens.dtype)
        hidden = self.act(self.text_in(tokens) + mask * self.entity_in(entities))
        fused_tokens = self.text_norm(tokens + self.dropout(self.act(self.text_out(hidden))))
        fused_entities = self.entity_norm(entities + self.dropout(self.act(self.entity_out(hidden))))
        return fused_tokens, mask * fused_entities
