"""Link-prediction models: a scoring head (`embed.kge`, torch-geometric's KGE models rewritten for
broadcast scoring, or the text predictor), optionally over a relational GNN encoder (`embed.gnn`),
behind one interface that scores given triples, sampled negatives, or every entity.

`LinkPredictor.score` equals the torch-geometric model's `forward` (tested). Heads and encoders are
looked up by name; adding either is one file in its package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import KGEConfig, LossConfig, ModelConfig, TrainingConfig
from .gnn import ENCODERS, RelationalEncoder
from .kge import HEADS, Head
from .triples import Triples

__all__ = ["ENCODERS", "HEADS", "KGEConfig", "LinkPredictor", "LossConfig", "ModelConfig", "TrainingConfig",
           "build_model"]


class LinkPredictor(nn.Module):
    """A head (`self.kge`), optionally with projected text features under its entity rows and an encoder
    over them. Scores are higher for more plausible triples; `predict_tail` is True for (h, r, ?) queries,
    False for (?, r, t), a bool for a whole batch or a bool tensor, one per row."""

    def __init__(self, config: KGEConfig | ModelConfig, num_entities: int, num_relations: int,
                 graph: Triples | None = None, features: Tensor | None = None):
        super().__init__()
        self.config = config
        self.num_entities = num_entities
        self.num_relations = num_relations
        head = HEADS[config.head]
        self.kge: Head = head.build(num_entities, num_relations, config, features)
        self.project: nn.Linear | None = None
        if config.text_features and head.takes_text_projection:
            if features is None or len(features) != num_entities:
                raise ValueError(f"text_features needs one feature row per entity ({num_entities})")
            # Text carries the entity at first; the per-entity rows learn only what the graph adds, so a
            # concept without edges keeps the projection of its text.
            self.project = nn.Linear(features.shape[1], head.row_width(config.dim), bias=False)
            self.register_buffer("features", features.float(), persistent=False)
            for table in self.kge.entity_tables():
                nn.init.zeros_(table.weight)
        self.encoder: RelationalEncoder | None = None
        if config.encoder:
            if graph is None:
                raise ValueError(f"{config.model} needs the training graph for message passing")
            self.encoder = ENCODERS[config.encoder](head.row_width(config.dim), num_relations, config)
            # Buffers, not parameters: rebuilt from the training triples, never saved.
            self.register_buffer("edge_index", torch.cat([torch.stack([graph.heads, graph.tails]),
                                                          torch.stack([graph.tails, graph.heads])], 1), persistent=False)
            self.register_buffer("edge_type", torch.cat([graph.relations, graph.relations + num_relations]),
                                 persistent=False)

    @property
    def logit_offset(self) -> float:
        return self.kge.logit_offset

    @property
    def matmul_scoring(self) -> bool:
        return self.kge.matmul_scoring

    def entity_table(self) -> Tensor:
        """Every entity's row, after the encoder if there is one."""
        x = self._embedding_rows(None)
        if self.encoder is not None:
            x = self.encoder(x, self.edge_index, self.edge_type)
        return x

    def concept_vectors(self) -> Tensor:
        """[num_entities, D] vectors to export for the aligner."""
        return self.kge.vectors(self.entity_table())

    def entity_rows(self, ids: Tensor, table: Tensor | None = None) -> Tensor:
        """Rows of `ids` from an `entity_table()`; without one, a shallow model gathers only these rows
        (a GNN encoder needs the full table)."""
        if table is not None:
            return table[ids]
        if self.encoder is not None:
            return self.entity_table()[ids]
        return self._embedding_rows(ids)

    def prepared_rows(self, ids: Tensor, table: Tensor | None = None) -> Tensor:
        """Candidate rows of `ids`; the whole table is prepared instead when it has fewer rows than `ids`
        (a small graph): TransE's normalising is most of a small training step, forward and backward."""
        if not self.config.sparse and self.num_entities < ids.numel() and self.kge.entity_tables():
            return F.embedding(ids, self.kge.prepare(self.entity_table() if table is None else table))
        return self.kge.prepare(self.entity_rows(ids, table))

    def queries(self, anchor_ids: Tensor, relations: Tensor, predict_tail: bool | Tensor,
                table: Tensor | None = None) -> Tensor:
        """Query rows of anchors `anchor_ids` under relation rows `relations` (`relation_rows`)."""
        return self.kge.query(self.kge.prepare_anchors(self.entity_rows(anchor_ids, table)), relations, predict_tail)

    def _embedding_rows(self, ids: Tensor | None) -> Tensor:
        rows = self.kge.entity_rows(ids)
        if self.project is not None:
            rows = rows + self.project(self.features if ids is None else self.features[ids])
        return rows

    def relation_rows(self, relations: Tensor) -> Tensor:
        return self.kge.relation_rows(relations)

    def similarity(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return self.kge.similarity(queries, candidates)

    def similarity_all(self, queries: Tensor, candidates: Tensor) -> Tensor:
        return self.kge.similarity_all(queries, candidates)

    def score(self, heads: Tensor, relations: Tensor, tails: Tensor, table: Tensor | None = None) -> Tensor:
        """Scores of (h, r, t) triples; equal to `self.kge(h, r, t)` when there is no encoder."""
        if table is None and self.encoder is not None:
            table = self.entity_table()
        return self.similarity(self.queries(heads, self.relation_rows(relations), True, table),
                               self.prepared_rows(tails, table))

    def score_all(self, anchors: Tensor, relations: Tensor, predict_tail: bool, table: Tensor | None = None) -> Tensor:
        """[B, num_entities] scores of every entity as the missing tail (or head) of each query."""
        table = self.entity_table() if table is None else table
        queries = self.kge.query(self.kge.prepare_anchors(table[anchors]), self.relation_rows(relations), predict_tail)
        return self.similarity_all(queries, self.kge.prepare(table))


def build_model(config: KGEConfig, train: Triples, features: Tensor | None = None) -> LinkPredictor:
    """A freshly initialised model for the vocabulary of `train` (and, for GNN encoders, its graph; with
    text features or the text head, one feature row per entity)."""
    torch.manual_seed(config.seed)
    model = LinkPredictor(config, train.num_entities, train.num_relations, train if config.encoder else None, features)
    return model.to(config.resolved_device())
