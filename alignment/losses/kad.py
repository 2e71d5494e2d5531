"""KAD's entity decoder (Zhang et al. 2023): entity queries ask image regions (or report words) whether
each entity is absent, present or uncertain.

KAD encodes its entity names with the frozen knowledge encoder, maps them through an MLP, and decodes
them against ResNet patches with 4 pre-norm layers (4 heads, FFN 1024, no positional encodings) into
2 classes (uncertain folded into absent); its loss is CE_img + CE_txt (report entities through the same
decoder) + a CLIP term. Here there are 3 classes (`alignment.states`), the memory is projected to the
decoder's width if needed and layer-normalised once (regions and words differ in scale, and the one
decoder serves both), and the last layer's cross-attention averaged over heads is returned for maps, or,
with `region_gamma` > 0, each entity's own attention over the memory (`EntityDecoder.region_attention`,
trained by `alignment.losses.entity_region`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignment.distributed import all_reduce_sum, world
from alignment.states import NUM_CLASSES, UNKNOWN

from .clip import full_precision


@dataclass
class EntityDecoderConfig:
    dim: int = 256          # decoder width (KAD: 768)
    layers: int = 4
    heads: int = 4
    ffn: int = 1024
    dropout: float = 0.1
    num_classes: int = NUM_CLASSES
    region_gamma: float = 0.0  # > 0: the maps are each entity's own attention at this γ (`region_attention`), not
                               # the last layer's cross-attention; train it with loss.entity_region (GLoRIA's γ1: 4)


class EntityOutput(NamedTuple):
    logits: Tensor      # [B, K, num_classes]
    attention: Tensor   # [B, K, N]: the entities' maps: last layer's cross-attention averaged over heads, or
                        # with region_gamma > 0 `region_attention`


class EntityDecoder(nn.Module):
    """forward(queries [K, query_dim] (or [B, K, query_dim]), memory [B, N, memory_dim], padding [B, N] bool
    | None, True = position to ignore) → EntityOutput(logits [B, K, num_classes], attention [B, K, N]).

    Pre-norm layers (self-attention among the entities, cross-attention to the memory, FFN), no
    positional encodings: the queries are the entities, the memory an unordered set. The attention rows
    sum to 1 over the positions not ignored, in eval mode (training mode applies attention dropout).
    """

    def __init__(self, config: EntityDecoderConfig, query_dim: int | None = None, memory_dim: int | None = None) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.query_mlp = nn.Sequential(nn.Linear(query_dim or dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.memory_proj = nn.Identity() if memory_dim in (None, dim) else nn.Linear(memory_dim, dim)
        self.memory_norm = nn.LayerNorm(dim)
        self.summary_proj = nn.Linear(memory_dim or dim, dim)
        self.layers = nn.ModuleList(_DecoderLayer(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(dim)
        # The classifier of each entity is computed from its query (a hypernetwork): logit_c = ⟨h_k, W_c q_k⟩ + b_c.
        # A head shared by all entities would have to separate them through the FFN alone, an additive mix of
        # query and image content; the bilinear form lets image content vote differently per entity, while an
        # entity never trained on still gets a classifier from its name's embedding.
        self.classifier = nn.Linear(dim, dim * config.num_classes)
        self.bias = nn.Parameter(torch.zeros(config.num_classes))

    def forward(self, queries: Tensor, memory: Tensor, padding: Tensor | None = None,
                summary: Tensor | None = None) -> EntityOutput:
        query = self.query_mlp(queries)
        x = query.unsqueeze(0).expand(memory.shape[0], -1, -1) if query.ndim == 2 else query
        weights = self.classifier(x).unflatten(-1, (self.config.num_classes, -1))  # [B, K, C, dim]
        memory = self.memory_norm(self.memory_proj(memory))
        attention = None
        for index, layer in enumerate(self.layers):
            x, attention = layer(x, memory, padding, need_weights=index == len(self.layers) - 1)
        # What the entity looked at votes directly: its attention-pooled memory joins the decoder state. At
        # initialisation the attention is near uniform, so this starts as a linear probe of mean-pooled regions
        # with per-entity weights, a signal the query-dominated residual stream alone lets through only faintly.
        evidence = self.norm(x) + torch.bmm(attention, memory)
        if summary is not None:  # the item's global vector [B, memory_dim]: a linear path every entity reads
            evidence = evidence + self.summary_proj(summary)[:, None, :]
        logits = torch.einsum("bkd,bkcd->bkc", evidence, weights) / weights.shape[-1] ** 0.5 + self.bias
        if self.config.region_gamma > 0:
            attention = self._region_attention(query, memory, padding)[0]
        return EntityOutput(logits, attention)

    def region_attention(self, queries: Tensor, memory: Tensor, padding: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Each entity's own attention over the memory and how well what it attends matches it: (a [B, K, N]
        rows summing to 1 over the positions not ignored, s [B, K] in [-1, 1]), where
        a_kr = softmax_r(γ·cos(q_k, m_r)) and s_k = cos(Σ_r a_kr m_r, q_k), q the query MLP's output,
        m the projected, normalised memory and γ = `region_gamma` (GLoRIA's word–region attention with the
        entity in the word's place). Unlike the cross-attention, no entity's map depends on another's."""
        if self.config.region_gamma <= 0:
            raise ValueError("region_attention needs EntityDecoderConfig.region_gamma > 0")
        return self._region_attention(self.query_mlp(queries), self.memory_norm(self.memory_proj(memory)), padding)

    def _region_attention(self, queries: Tensor, memory: Tensor, padding: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(memory):  # cosines scaled by γ, then by the loss's τ: bf16's 3 digits would show
            q, memory = F.normalize(queries.float(), dim=-1), memory.float()
            if q.ndim == 2:
                q = q.unsqueeze(0).expand(memory.shape[0], -1, -1)
            logits = self.config.region_gamma * torch.einsum("bkd,bnd->bkn", q, F.normalize(memory, dim=-1))
            if padding is not None:
                logits = logits.masked_fill(padding[:, None, :], float("-inf"))
            attention = logits.softmax(-1)
            return attention, (F.normalize(torch.bmm(attention, memory), dim=-1) * q).sum(-1)


class _DecoderLayer(nn.Module):
    def __init__(self, config: EntityDecoderConfig) -> None:
        super().__init__()
        dim, heads, dropout = config.dim, config.heads, config.dropout
        self.self_norm, self.cross_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(config.ffn, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, padding: Tensor | None, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        h = self.self_norm(x)
        x = x + self.dropout(self.self_attn(h, h, h, need_weights=False)[0])
        h = self.cross_norm(x)
        out, weights = self.cross_attn(h, memory, memory, key_padding_mask=padding, need_weights=need_weights,
                                       average_attn_weights=True)
        x = x + self.dropout(out)
        return x + self.dropout(self.ffn(self.ffn_norm(x))), weights


class EntityLoss(nn.Module):
    """Three-way cross-entropy of entity logits [B, K, C] against states [B, K], UNKNOWN ignored,
    optionally class-weighted: Σ w_y · CE / Σ w_y over the known (item, entity) cells.

    KAD's loss is the same with two classes (present vs. absent-or-uncertain). The normaliser Σ w_y is
    summed over the global batch (all-reduced, a collective: call it on every process), so DDP's gradient
    averaging gives the one-process gradient even when processes hold different numbers of known cells;
    a batch with no known cell gives 0, not NaN (decoupled reports often state few entities).
    """

    def __init__(self, class_weights: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("class_weights", None if class_weights is None else torch.as_tensor(class_weights).float())

    def forward(self, logits: Tensor, states: Tensor) -> Tensor:
        with full_precision(logits):
            logits = logits.float().reshape(-1, logits.shape[-1])
            states = states.reshape(-1).long()
            losses = F.cross_entropy(logits, states, weight=self.class_weights, ignore_index=UNKNOWN, reduction="none")
            known = (states != UNKNOWN).float()
            if self.class_weights is not None:
                known = known * self.class_weights[states.clamp_min(0)]
            normaliser = all_reduce_sum(known.sum()) / world()[1]
            return losses.sum() / normaliser.clamp_min(torch.finfo(normaliser.dtype).tiny)
