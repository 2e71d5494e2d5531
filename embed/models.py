"""Link-prediction models: torch-geometric's KGE models (TransE, DistMult, RotatE, ComplEx), optionally
over a relational GNN encoder (RGCN or FiLM), behind one interface that scores given triples, sampled negatives, or every entity.

torch-geometric's models score one (h, r, t) triple at a time. Ranking against all entities, or 1-N
training, would then need num_entities copies of every query, so each model here is rewritten as a
query vector (the head transformed by the relation, or the tail by the inverse relation) compared with
candidate entity vectors, by a dot product or a distance. That form broadcasts over negatives and turns
all-entity scoring into one matrix product or `cdist`; `LinkPredictor.score` equals the torch-geometric
model's `forward` (tested), and the parameters, their initialisation and their layout are
torch-geometric's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import FiLMConv, RGCNConv
from torch_geometric.nn.kge import ComplEx, DistMult, KGEModel, RotatE, TransE

from encoders.device import resolve_device

from .triples import Triples

HEADS: dict[str, type[KGEModel]] = {"transe": TransE, "distmult": DistMult, "rotate": RotatE, "complex": ComplEx}
ENCODERS = ("rgcn", "film")
LOSSES = ("margin", "bce", "nssa", "softmax", "ce")
COMPLEX_HEADS = ("rotate", "complex")  # entity rows are [real | imaginary], 2 * dim wide


@dataclass
class KGEConfig:
    """Everything that defines a training run; saved with every checkpoint.

    `model` is a scoring head (`transe`, `distmult`, `rotate`, `complex`), optionally behind a relational
    GNN encoder (`rgcn-distmult`, `film-rotate`, ...). Losses: `margin` (pairwise margin ranking), `bce` (logistic, positives
    and negatives weighted equally), `nssa` (self-adversarial negative sampling, the RotatE paper's loss),
    `softmax` (cross-entropy of the positive against its negatives: sampled softmax) all over `negatives`
    sampled corruptions per positive; `ce` is 1-N training: softmax cross-entropy over all
    entities for both the tail and the head query of every positive, `negatives` unused. With
    `shared_negatives`, the corruptions of a batch are one pool that every positive is scored against, as
    in PyTorch-BigGraph: on a large graph far cheaper than `negatives` rows gathered for each positive.
    `sparse` updates only the embedding rows a batch touches (`torch.optim.SparseAdam`, a lazy Adam)
    instead of zeroing and stepping the whole entity table every batch; shallow models, sampled losses."""

    model: str = "rotate"
    dim: int = 128
    loss: str = "nssa"
    margin: float = 6.0  # TransE/RotatE distance margin; for logistic losses the logit is margin - distance
    p_norm: float = 1.0  # TransE's distance (and entity normalisation) norm
    adversarial_temperature: float = 1.0
    label_smoothing: float = 0.0
    regularization: float = 0.0  # N3 weight on the embeddings a batch touches (Lacroix et al., 2018)
    lr: float = 0.01
    batch_size: int = 256
    negatives: int = 32
    shared_negatives: bool = False  # one pool of `negatives` per batch, scored by a matrix product (large graphs)
    sparse: bool = False  # sparse embedding gradients and a lazy Adam over the rows a batch touches (large graphs)
    epochs: int = 100
    eval_every: int = 0  # validation MRR every N epochs; 0 = never
    eval_batch_size: int = 256
    seed: int = 0
    device: str = ""  # "" = cuda when available, else cpu
    encoder_layers: int = 2
    encoder_bases: int = 4
    encoder_dropout: float = 0.0
    text_features: bool = False  # entity rows = projected text features + a learned residual (starting at 0)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown model {self.model!r}: a head in {sorted(HEADS)}, optionally prefixed by {ENCODERS}")
        if self.encoder and self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r} in {self.model!r}; one of {ENCODERS}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; one of {LOSSES}")
        if self.sparse and (self.encoder or self.loss == "ce" or self.text_features):
            raise ValueError("sparse gradients need a model without encoder or text features, and a sampled loss (not ce)")
        if self.dim < 1 or self.batch_size < 1 or self.epochs < 0 or (self.loss != "ce" and self.negatives < 1):
            raise ValueError("dim, batch_size and negatives must be positive, epochs non-negative")

    @property
    def head(self) -> str:
        return self.model.rpartition("-")[2]

    @property
    def encoder(self) -> str:
        return self.model.rpartition("-")[0]

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device or None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> KGEConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class RelationalEncoder(nn.Module):
    """Full-batch relational message passing over the training graph (each relation and its inverse):
    entity rows in, contextual entity rows of the same width out, ReLU between layers. Layers are
    torch-geometric's: `rgcn` is `RGCNConv` (a weight per relation, basis-decomposed; Schlichtkrull et
    al., 2018), `film` is `FiLMConv` (messages modulated feature-wise by the relation, the
    relation-aware alternative to CompGCN that torch-geometric ships; Brockschmidt, 2020)."""

    def __init__(self, kind: str, width: int, num_relations: int, layers: int, bases: int, dropout: float):
        super().__init__()
        relations = 2 * num_relations
        if kind == "rgcn":
            self.convs = nn.ModuleList(RGCNConv(width, width, relations, num_bases=bases) for _ in range(layers))
        else:  # act=None: signed outputs, as KGE scores need; the ReLU between layers is ours
            self.convs = nn.ModuleList(FiLMConv(width, width, relations, act=None) for _ in range(layers))
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor, edge_type: Tensor) -> Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(F.dropout(x, self.dropout, self.training), edge_index, edge_type)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return x


class LinkPredictor(nn.Module):
    """A torch-geometric KGE model (`self.kge`), optionally with an encoder over its entity embeddings.

    Scores are higher for more plausible triples. `predict_tail` says which side a query predicts: True for
    (h, r, ?), whose anchor is h; False for (?, r, t), whose anchor is t. It is a bool for a whole batch
    or a bool tensor, one per row."""

    def __init__(self, config: KGEConfig, num_entities: int, num_relations: int, graph: Triples | None = None,
                 features: Tensor | None = None):
        super().__init__()
        self.config = config
        self.num_entities = num_entities
        kwargs: dict[str, Any] = {"margin": config.margin} if config.head != "complex" else {}
        if config.head == "transe":
            kwargs["p_norm"] = config.p_norm
        self.kge = HEADS[config.head](num_entities, num_relations, config.dim, sparse=config.sparse, **kwargs)
        width = config.dim * (2 if config.head in COMPLEX_HEADS else 1)
        self.project: nn.Linear | None = None
        if config.text_features:
            if features is None or len(features) != num_entities:
                raise ValueError(f"text_features needs one feature row per entity ({num_entities})")
            # Text carries the entity at first; the per-entity rows learn only what the graph adds, so a
            # concept without edges keeps the projection of its text.
            self.project = nn.Linear(features.shape[1], width, bias=False)
            self.register_buffer("features", features.float(), persistent=False)
            for table in self._entity_tables():
                nn.init.zeros_(table.weight)
        self.encoder: RelationalEncoder | None = None
        if config.encoder:
            if graph is None:
                raise ValueError(f"{config.model} needs the training graph for message passing")
            self.encoder = RelationalEncoder(config.encoder, width, num_relations, config.encoder_layers, config.encoder_bases,
                                       config.encoder_dropout)
            # Buffers, not parameters: rebuilt from the training triples, never saved.
            self.register_buffer("edge_index", torch.cat([torch.stack([graph.heads, graph.tails]),
                                                          torch.stack([graph.tails, graph.heads])], 1), persistent=False)
            self.register_buffer("edge_type", torch.cat([graph.relations, graph.relations + num_relations]),
                                 persistent=False)

    @property
    def logit_offset(self) -> float:
        """Added to scores to make logits: RotatE's score already holds the margin (torch-geometric's
        convention, margin - distance); TransE's is -distance."""
        return self.config.margin if self.config.head == "transe" else 0.0

    def entity_table(self) -> Tensor:
        """Every entity's row ([real | imaginary] for complex heads), after the encoder if there is one."""
        x = self._embedding_rows(None)
        if self.encoder is not None:
            x = self.encoder(x, self.edge_index, self.edge_type)
        return x

    def entity_rows(self, ids: Tensor, table: Tensor | None = None) -> Tensor:
        """Rows of `ids` from an `entity_table()`; without one, a shallow model gathers only these rows
        (a GNN encoder needs the full table)."""
        if table is not None:
            return table[ids]
        if self.encoder is not None:
            return self.entity_table()[ids]
        return self._embedding_rows(ids)

    def prepared_rows(self, ids: Tensor, table: Tensor | None = None) -> Tensor:
        """`prepare(entity_rows(ids))`; TransE normalises the whole table instead when it has fewer rows than
        `ids` (a small graph): normalising is most of a small training step, forward and backward."""
        if self.config.head == "transe" and not self.config.sparse and self.num_entities < ids.numel():
            return F.embedding(ids, self.prepare(self.entity_table() if table is None else table))
        return self.prepare(self.entity_rows(ids, table))

    def _entity_tables(self) -> list[nn.Embedding]:
        return [self.kge.node_emb] + ([self.kge.node_emb_im] if self.config.head in COMPLEX_HEADS else [])

    def _embedding_rows(self, ids: Tensor | None) -> Tensor:
        parts = [t.weight if ids is None else t(ids) for t in self._entity_tables()]  # calling honours `sparse`
        rows = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if self.project is not None:
            rows = rows + self.project(self.features if ids is None else self.features[ids])
        return rows

    def relation_rows(self, relations: Tensor) -> Tensor:
        """Relation rows: a translation (TransE), a diagonal (DistMult), [cos | sin] of rotation phases
        (RotatE), or [real | imaginary] (ComplEx)."""
        r = self.kge.rel_emb(relations)
        if self.config.head == "rotate":
            return torch.cat([torch.cos(r), torch.sin(r)], dim=-1)
        if self.config.head == "complex":
            return torch.cat([r, self.kge.rel_emb_im(relations)], dim=-1)
        return r

    def prepare(self, rows: Tensor) -> Tensor:
        """Entity rows as the score sees them: TransE normalises its entities, as torch-geometric's does."""
        if self.config.head != "transe":
            return rows
        return rows / _norm(rows, self.config.p_norm).unsqueeze(-1).clamp_min(1e-12)  # F.normalize, faster

    def query(self, anchors: Tensor, relations: Tensor, predict_tail: bool | Tensor) -> Tensor:
        """The vector the missing entity is compared with, from prepared anchor rows: the head moved by the
        relation, h + r or h * r, or the tail moved back, t - r or t * conj(r) (RotatE's rotations have
        modulus 1, so t * conj(r) is the head that h * r = t needs)."""
        if self.config.head == "transe":
            if isinstance(predict_tail, Tensor):
                return anchors + torch.where(predict_tail, 1.0, -1.0).unsqueeze(-1) * relations
            return anchors + relations if predict_tail else anchors - relations
        if self.config.head == "distmult":
            return anchors * relations
        a_re, a_im = anchors.chunk(2, dim=-1)
        r_re, r_im = relations.chunk(2, dim=-1)
        if isinstance(predict_tail, Tensor):
            r_im = torch.where(predict_tail.unsqueeze(-1), r_im, -r_im)
        elif not predict_tail:
            r_im = -r_im
        return torch.cat([a_re * r_re - a_im * r_im, a_im * r_re + a_re * r_im], dim=-1)

    def similarity(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """Scores of broadcastable query and candidate rows (last dimension reduced)."""
        head = self.config.head
        if head == "transe":
            return -_norm(queries - candidates, self.config.p_norm)
        if head == "rotate":
            return self.config.margin - (queries - candidates).norm(p=2, dim=-1)
        return (queries * candidates).sum(dim=-1)

    @property
    def matmul_scoring(self) -> bool:
        """Whether `similarity_all` is a matrix product: dot products, or L2 distances computed through one."""
        return self.config.head != "transe" or self.config.p_norm == 2

    def similarity_all(self, queries: Tensor, candidates: Tensor) -> Tensor:
        """[B, N] scores of B queries against N candidates: a matrix product or `cdist`, no [B, N, D] tensor."""
        head = self.config.head
        if head == "transe":
            return -torch.cdist(queries, candidates, p=self.config.p_norm)
        if head == "rotate":
            return self.config.margin - torch.cdist(queries, candidates)
        return queries @ candidates.T

    def score(self, heads: Tensor, relations: Tensor, tails: Tensor, table: Tensor | None = None) -> Tensor:
        """Scores of (h, r, t) triples; equal to `self.kge(h, r, t)` when there is no encoder."""
        if table is None and self.encoder is not None:
            table = self.entity_table()
        return self.similarity(self.query(self.prepared_rows(heads, table), self.relation_rows(relations), True),
                               self.prepared_rows(tails, table))

    def score_all(self, anchors: Tensor, relations: Tensor, predict_tail: bool, table: Tensor | None = None) -> Tensor:
        """[B, num_entities] scores of every entity as the missing tail (or head) of each query."""
        table = self.prepare(self.entity_table() if table is None else table)
        return self.similarity_all(self.query(table[anchors], self.relation_rows(relations), predict_tail), table)


def _norm(x: Tensor, p: float) -> Tensor:
    """The p-norm over the last dimension; for p = 1 as abs().sum(), half the time of `vector_norm`
    forward and backward, which matters in TransE's small steps."""
    return x.abs().sum(dim=-1) if p == 1 else torch.linalg.vector_norm(x, ord=p, dim=-1)


def build_model(config: KGEConfig, train: Triples, features: Tensor | None = None) -> LinkPredictor:
    """A freshly initialised model for the vocabulary of `train` (and, for GNN encoders, its graph; with
    `text_features`, one feature row per entity)."""
    torch.manual_seed(config.seed)
    model = LinkPredictor(config, train.num_entities, train.num_relations, train if config.encoder else None, features)
    return model.to(config.resolved_device())
