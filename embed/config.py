"""Settings of a link-prediction run, in three parts: the model (what is scored), the loss (what it is
trained to score high), and the training (how it is optimised and run). Each part reads only its own;
`KGEConfig` is all three together, the flat record saved with every checkpoint and in `config.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from encoders.device import resolve_device


@dataclass
class ModelConfig:
    """`model` is a scoring head (`transe`, `distmult`, `rotate`, `complex`, `text`), optionally behind a
    relational GNN encoder (`rgcn-distmult`, `film-rotate`, ...). `sparse` builds the entity tables with
    sparse gradients, updated by a lazy Adam over the rows a batch touches (large graphs)."""

    model: str = "rotate"
    dim: int = 128
    margin: float = 6.0  # TransE/RotatE distance margin; for logistic losses the logit is margin - distance
    p_norm: float = 1.0  # TransE's distance (and entity normalisation) norm
    sparse: bool = False
    encoder_layers: int = 2
    encoder_bases: int = 4
    encoder_dropout: float = 0.0
    text_features: bool = False  # entity rows = projected text features + a learned residual (starting at 0)
    temperature: float = 0.05  # the text model's starting temperature (learned)

    @property
    def head(self) -> str:
        return self.model.rpartition("-")[2]

    @property
    def encoder(self) -> str:
        return self.model.rpartition("-")[0]


@dataclass
class LossConfig:
    """`loss` names an entry of `embed.losses.LOSSES`: `margin` (pairwise margin ranking), `bce` (logistic),
    `nssa` (self-adversarial negative sampling, RotatE's), `softmax` (sampled softmax) over `negatives`
    sampled corruptions per positive (with `shared_negatives`, one pool per batch, as in PyTorch-BigGraph);
    `ce` (1-N: softmax over all entities, both sides of every positive); `infonce` (SimKGC's: softmax over
    the batch's other answers, the previous `prebatch` batches' answers and the anchor itself, the positive
    lowered by `additive_margin`)."""

    loss: str = "nssa"
    negatives: int = 32
    shared_negatives: bool = False
    adversarial_temperature: float = 1.0
    label_smoothing: float = 0.0
    regularization: float = 0.0  # N3 weight on the embeddings a batch touches (Lacroix et al., 2018)
    additive_margin: float = 0.02
    prebatch: int = 2


@dataclass
class TrainingConfig:
    lr: float = 0.01
    batch_size: int = 256
    epochs: int = 100
    eval_every: int = 0  # validation MRR every N epochs; 0 = never
    eval_batch_size: int = 256
    seed: int = 0
    device: str = ""  # "" = cuda when available, else cpu

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device or None)


@dataclass
class KGEConfig(TrainingConfig, LossConfig, ModelConfig):
    """Everything that defines a training run; saved with every checkpoint."""

    def __post_init__(self) -> None:
        from .gnn import ENCODERS
        from .kge import HEADS
        from .losses import LOSSES

        if self.head not in HEADS:
            raise ValueError(f"unknown model {self.model!r}: a head in {sorted(HEADS)}, optionally prefixed by {sorted(ENCODERS)}")
        if self.encoder and (self.encoder not in ENCODERS or not HEADS[self.head].encodable):
            raise ValueError(f"unknown encoder {self.encoder!r} in {self.model!r}; one of {sorted(ENCODERS)}, "
                             f"before a head of {sorted(h for h, c in HEADS.items() if c.encodable)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; one of {sorted(LOSSES)}")
        if self.sparse and (self.encoder or self.loss in ("ce", "infonce") or self.text_features):
            raise ValueError("sparse gradients need a model without encoder or text features, and a sampled loss")
        if self.dim < 1 or self.batch_size < 1 or self.epochs < 0 or (self.loss not in ("ce", "infonce") and self.negatives < 1):
            raise ValueError("dim, batch_size and negatives must be positive, epochs non-negative")

    def part(self, cls: type) -> Any:
        """This run's `ModelConfig`, `LossConfig` or `TrainingConfig`."""
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> KGEConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
