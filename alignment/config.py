"""What a training run is: data, model, losses and optimisation, one dataclass each, read from YAML.

Defaults are the papers' where a paper sets them (temperatures, GLoRIA's γ, MGCA's prototype count and
Sinkhorn settings), and small, CPU-sized ones elsewhere; the shipped `configs/*.yaml` say which paper
each run follows. Paths in a config are relative to the data directory (`--data-dir`), except absolute
ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from encoders.image import ImageEncoderConfig
from encoders.transforms import ImageTransformConfig
from kg.errors import DamagedFileError

from .losses.kad import EntityDecoderConfig
from .settings import ConfigError, apply_overrides, from_dict, load_yaml, to_dict

PAIRINGS = ("paired", "pseudo", "independent")
TARGETS = ("hard", "medclip", "knowledge")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class DataConfig:
    """Where images and reports come from and how a batch pairs them.

    `pairing`: "paired" uses a paired corpus's own pairs (MIMIC-CXR, IU with images, a CSV manifest);
    "pseudo" gives each image a report whose labels equal (or overlap most with) the image's, the plain
    CLIP baseline on decoupled data; "independent" draws reports apart from images (MedCLIP's decoupling):
    only soft targets and the entity decoder then relate the two sides."""
    images: str = "nih-cxr14"             # corpus layout: nih-cxr14, chexpert, mimic-cxr, iu-xray, csv
    image_root: str = "nih-cxr14-bbox"    # relative to the data directory
    reports: str = "iu-xray/NLMCXR_reports.tgz"  # decoupled report corpus; "" when the image corpus is paired
    pairing: str = "independent"
    label_set: str = "chestxray14"        # the label set that maps image labels to graph concepts
    extra_entities: int = 16              # the reports' most frequent finding concepts, beyond the labels
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])  # train / valid / test, by patient
    split_seed: int = 0                   # fixed across training seeds: every seed is tested on the same patients
    kg: str = ""                          # an RRF directory; "" builds the open graph from the data directory (cached)
    mentions: str = ""                    # the reports' mentions (JSON Lines); "" extracts them (cached)
    concept_vectors: str = ""             # `medkg embed export` output; "" uses the knowledge encoder's name vectors
    knowledge_encoder: str = ""           # text encoder for entity names; "" is the bundled MiniLM
    image_cache: bool = True              # decoded, resized images kept under the cache directory
    views: int = 2                        # views fused per study on paired corpora (frontal + lateral)

    def __post_init__(self) -> None:
        _one_of("data.pairing", self.pairing, PAIRINGS)
        if len(self.split) != 3 or any(f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(f"data.split: three non-negative fractions summing to 1, got {self.split}")
        if self.extra_entities < 0 or self.views < 1:
            raise ConfigError("data.extra_entities must be >= 0 and data.views >= 1")


@dataclass
class TextConfig:
    encoder: str = ""                     # a local transformers directory; "" is the bundled MiniLM
    trainable_layers: int = 1             # top transformer layers fine-tuned; the rest stay frozen (CPU budget)
    max_length: int = 96                  # tokens per report
    section_prefixes: bool = True         # keep "FINDINGS:" / "IMPRESSION:" titles in the text


@dataclass
class ModelConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 128                  # shared space of global and local features (MGCA: 128)
    logit_scale_init: float = math.log(1 / 0.07)  # CLIP: learned, initialised at 1/0.07, clamped at 100
    learn_logit_scale: bool = True
    decoder: EntityDecoderConfig | None = None    # the KAD entity decoder; None for models without one


@dataclass
class LossConfig:
    """Weights of each term (0 turns it off) and the papers' hyper-parameters."""
    clip: float = 1.0                     # global InfoNCE
    targets: str = "hard"                 # hard (CLIP), medclip (label soft targets), knowledge (graph soft targets)
    target_temperature: float = 1.0       # softmax temperature of soft targets (MedCLIP: 1, none)
    similarity_threshold: float = 0.5     # concept cosine below which entities share nothing (knowledge targets)
    local_loss: bool = False              # sharded contrastive loss under DDP (local rows, global columns)
    gloria_local: float = 0.0
    gloria_global: float = 0.0
    gloria_gamma: list[float] = field(default_factory=lambda: [4.0, 5.0, 10.0])  # γ1, γ2, γ3
    mgca_cta: float = 0.0                 # MGCA's token-wise cross-attention alignment
    cta_temperature: float = 0.1
    prototype: float = 0.0                # prototype alignment by swapped prediction (MGCA's CPA)
    prototypes: int = 500                 # prototype count (MGCA: 500)
    anchor_prototypes: bool = False       # the first prototypes start at, and stay near, the entities' concept vectors
    prototype_anchor: float = 1.0         # pull of anchored prototypes towards their concepts
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    prototype_temperature: float = 0.2
    freeze_prototypes_epochs: int = 1     # MGCA freezes prototypes in the first epoch
    entity_image: float = 0.0             # KAD: entity states of images (from labels) through the decoder
    entity_text: float = 0.0              # KAD: entity states of reports (from extraction) through the decoder
    entity_region: float = 0.0            # entity–region contrast of images (labels): trains the maps of a decoder
                                          # with model.decoder.region_gamma > 0 (alignment.losses.entity_region)
    concept_word_weight: float = 1.0      # weight of words inside a concept mention in the word-level losses

    def __post_init__(self) -> None:
        _one_of("loss.targets", self.targets, TARGETS)
        if len(self.gloria_gamma) != 3:
            raise ConfigError("loss.gloria_gamma: three values, γ1 γ2 γ3")
        if self.target_temperature <= 0 or self.sinkhorn_epsilon <= 0:
            raise ConfigError("loss temperatures and sinkhorn_epsilon must be positive")


@dataclass
class TrainConfig:
    seed: int = 0
    epochs: int = 10
    batch_size: int = 32                  # the global batch: split across processes under DDP
    lr: float = 2e-4
    text_lr: float = 2e-5                 # the pretrained text encoder moves slower (MedCLIP, MGCA: 2e-5)
    weight_decay: float = 1e-4
    warmup: float = 0.1                   # share of steps with linear warm-up, then cosine decay
    accumulate: int = 1                   # gradient accumulation steps per optimiser step
    precision: str = "bf16"               # autocast on CUDA; the CPU always runs fp32
    device: str = ""                      # "" is cuda when present, else cpu
    max_grad_norm: float = 1.0
    eval_every: int = 1                   # epochs between validations on the valid patients; 0 never
    checkpoint_every: int = 20            # optimiser steps between mid-epoch checkpoints (and every epoch end)
    patch_dropout: float = 0.0            # share of image regions dropped (FLIP, BiomedCLIP): ViT/DINOv2 patch tokens
                                          # before the layers (the saving), CNN regions after the encoder
    patch_dropout_unmasked_epochs: int = 0  # the last epochs run unmasked
    grad_cache_chunk: int = 0             # > 0: gradient caching (alignment.grad_cache), encoders run in chunks of this size
    threads: int = 0                      # CPU threads; 0 leaves torch's default
    max_minutes: float = 0.0              # > 0: a time budget for the run (alignment.train.plan_epochs); 0 none

    def __post_init__(self) -> None:
        _one_of("train.precision", self.precision, PRECISIONS)
        for name in ("epochs", "batch_size", "accumulate"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1")
        if not 0 <= self.patch_dropout < 1:
            raise ConfigError("train.patch_dropout must be in [0, 1)")
        if self.max_minutes < 0:
            raise ConfigError("train.max_minutes must be >= 0 (0: no time budget)")
        if self.grad_cache_chunk < 0:
            raise ConfigError("train.grad_cache_chunk must be >= 0 (0: no gradient caching)")


@dataclass
class AlignConfig:
    data: DataConfig = field(default_factory=DataConfig)
    transform: ImageTransformConfig = field(default_factory=ImageTransformConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.transform.image_size != self.model.image.image_size or self.transform.channels != self.model.image.channels:
            raise ConfigError("transform.image_size/channels must equal model.image.image_size/channels "
                              f"({self.transform.image_size}/{self.transform.channels} vs "
                              f"{self.model.image.image_size}/{self.model.image.channels})")
        uses_decoder = self.loss.entity_image > 0 or self.loss.entity_text > 0
        if uses_decoder and self.model.decoder is None:
            raise ConfigError("loss.entity_image/entity_text need model.decoder (the entity decoder)")
        decoder = self.model.decoder
        if decoder is not None and not (math.isfinite(decoder.region_gamma) and decoder.region_gamma >= 0):
            raise ConfigError(f"model.decoder.region_gamma: a finite number >= 0 (0: cross-attention maps), got {decoder.region_gamma}")
        if self.loss.entity_region > 0 and decoder is None:
            raise ConfigError("loss.entity_region needs model.decoder (the entity decoder) with region_gamma > 0")
        if (self.loss.entity_region > 0) != (decoder is not None and decoder.region_gamma > 0):
            raise ConfigError("loss.entity_region and model.decoder.region_gamma go together: the loss trains the "
                              "entities' own maps, which a decoder draws only with region_gamma > 0 (and "
                              "without the loss they would be untrained)")
        if self.loss.entity_region > 0 and not uses_decoder:
            raise ConfigError("loss.entity_region trains the entities' maps only: it needs loss.entity_image or "
                              "loss.entity_text too, or the decoder's present / absent scores stay untrained")
        if self.loss.prototype > 0 and self.loss.prototypes < 1:
            raise ConfigError("loss.prototype needs loss.prototypes >= 1")
        if self.data.pairing == "independent" and self.loss.targets == "hard" and self.loss.clip > 0:
            raise ConfigError("loss.targets 'hard' needs pairs: independent reports have no partner image "
                              "(use data.pairing: pseudo, or loss.targets: medclip / knowledge)")

    def as_dict(self) -> dict[str, Any]:
        return to_dict(self)


VERSION_KEY = "medkg_version"  # the medkg version stamped on a run's config.yaml: a record, not a setting


def load_config(path: Path | None = None, overrides: list[str] | None = None, *, whole: bool = False) -> AlignConfig:
    """The config in `path` (YAML; None: the defaults) with `key.sub=value` overrides applied. A run's own
    config.yaml is one too (its version stamp is dropped), so a run is repeated with another seed by
    `medkg train --config RUN/config.yaml --set train.seed=1`. With `whole` (reading a run's config.yaml), a file
    without all of its sections (empty, cut short, or some other file) is damaged, not read as the defaults."""
    values = load_yaml(path) if path is not None else {}
    missing = [f.name for f in fields(AlignConfig) if f.name not in values] if whole else []
    if missing:
        raise DamagedFileError(f"{path} is not a whole run config ({', '.join(missing)} missing); train the run again")
    values.pop(VERSION_KEY, None)
    values = apply_overrides(values, overrides or [])
    where = f"{path}: " if path is not None else ""
    try:
        return from_dict(AlignConfig, values)
    except ConfigError as error:
        raise ConfigError(f"{where}{error}") from None


def _one_of(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(options)}")
