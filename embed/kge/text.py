"""A text-based link predictor (SimKGC style; Wang et al., 2022) over frozen concept text vectors.

The query is the anchor's text vector with the relation added (its own vector per direction, so a head
query is the inverse relation: "what IS_A-children has x"), moved by a small residual MLP; a candidate
is its text vector moved by a residual linear map. The residuals start at zero, so training starts
from the texts' cosines, and the candidate side is one matrix product, cheap enough to recompute for
every batch on a CPU. Both are unit vectors of the text's width, scored by cosine times a learned
scale (the inverse temperature, starting at 1 / 0.05). No row belongs to an entity, so a concept never
seen in training is ranked from its text alone (inductive), and every concept's candidate vector is
computed once for ranking. Trained with the `infonce` loss: in-batch, pre-batch and self negatives,
additive margin.

The text vectors are the run's features (the bundled MiniLM, or a knowledge encoder from `medkg embed
knowledge`, over each concept's name, synonyms and definition). Entity rows are [text | candidate].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .base import Head, register

MAX_SCALE = 100.0  # temperature at least 0.01, as SimKGC clamps it


@register("text")
class TextHead(Head):
    takes_text_projection = False
    encodable = False

    def __init__(self, features: Tensor, num_relations: int, temperature: float):
        super().__init__()
        width = features.shape[1]
        self.text_width = width
        self.num_relations = num_relations
        self.register_buffer("features", F.normalize(features.float(), dim=-1), persistent=False)
        self.rel_emb = nn.Embedding(2 * num_relations, width)  # relation, then its inverse
        nn.init.zeros_(self.rel_emb.weight)
        # Residual maps that start at zero: before training, the score is the cosine of the two texts.
        self.query_mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.candidate_map = nn.Linear(width, width, bias=False)
        nn.init.zeros_(self.query_mlp[-1].weight)
        nn.init.zeros_(self.query_mlp[-1].bias)
        nn.init.zeros_(self.candidate_map.weight)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    @classmethod
    def build(cls, num_entities: int, num_relations: int, config: ModelConfig, features: Tensor | None) -> Head:
        if features is None or len(features) != num_entities:
            raise ValueError(f"the text model needs one text feature row per entity ({num_entities}); "
                             "train it with text features")
        return cls(features, num_relations, config.temperature)

    @classmethod
    def row_width(cls, dim: int) -> int:
        raise ValueError("the text model's rows are [text | candidate]; it takes no GNN encoder")

    def entity_tables(self) -> list[nn.Embedding]:
        return []

    def entity_rows(self, ids: Tensor | None) -> Tensor:
        text = self.features if ids is None else self.features[ids]
        return torch.cat([text, F.normalize(text + self.candidate_map(text), dim=-1)], dim=-1)

    def relation_rows(self, relations: Tensor) -> Tensor:
        return torch.cat([self.rel_emb(relations), self.rel_emb(relations + self.num_relations)], dim=-1)

    def prepare(self, rows: Tensor) -> Tensor:
        return rows[..., self.text_width:]

    def prepare_anchors(self, rows: Tensor) -> Tensor:
        return rows[..., :self.text_width]

    def query(self, anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
        forward, inverse = relations.chunk(2, dim=-1)
        if isinstance(predict_tail, Tensor):
            relation = torch.where(predict_tail.unsqueeze(-1), forward, inverse)
        else:
            relation = forward if predict_tail else inverse
        x = anchors + relation
        return F.normalize(x + self.query_mlp(x), dim=-1)

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)

    def similarity(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return self.scale * (queries * candidates).sum(dim=-1)

    def similarity_all(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return self.scale * (queries @ candidates.T)

    def vectors(self, table: Tensor) -> Tensor:
        return self.prepare(table)  # the candidate vectors: where each concept sits as an answer

    def n3(self, rows: Tensor) -> Tensor:
        return rows.new_zeros(())
