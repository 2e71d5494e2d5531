"""The aligned model: an image encoder and a text encoder projected into one space, the temperature, and
the part that carries knowledge into inference (the entity decoder with its entity queries).

It owns everything a trained run needs at inference, so a run is loaded with one call and no training
config: `save_pretrained` writes `alignment_model.json` (the model config and the entity names), the two
encoders in their own transformers directories (`image/`, `text/`) and the remaining weights in
`heads.safetensors`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from encoders.image import ImageEncoder
from encoders.text import TextEncoder, TextFeatures, quiet_loading
from kg.atomic import sibling_directory
from kg.errors import DamagedFileError, InputError, MedkgError, MissingInputError

from .config import ModelConfig
from .losses.kad import EntityDecoder
from .settings import from_dict, to_dict

CONFIG_NAME = "alignment_model.json"
HEADS_NAME = "heads.safetensors"
FORMAT_VERSION = 2  # 2: the entity decoder computes each entity's classifier from its query and reads a global summary


@dataclass
class ImageOutput:
    global_: Tensor                 # [B, E] unit vectors
    pooled: Tensor                  # [B, E] the same before normalisation (the entity decoder's summary)
    backbone: Tensor                # [B, D] the image encoder's own global vector, unprojected (linear probes)
    local: Tensor                   # [B, N, E] projected region features (the kept ones after patch dropout)
    grid: tuple[int, int]           # (h, w) of the whole grid of regions
    attentions: Tensor | None       # ViT's last-layer attentions, for token weights (None after patch dropout)
    kept: Tensor | None = None      # [B, n] positions of `local` among the N regions after patch dropout; None: all


@dataclass
class TextOutput:
    global_: Tensor                 # [B, E] unit vectors
    pooled: Tensor                  # [B, E] the same before normalisation (the entity decoder's summary)
    words: Tensor                   # [B, W, E] projected word features
    word_mask: Tensor               # [B, W] bool
    word_spans: list[list[tuple[int, int]]]
    word_text: list[list[str]]


class AlignmentModel(nn.Module):
    def __init__(self, config: ModelConfig, entity_names: list[str], entity_queries: Tensor | None,
                 image_encoder: ImageEncoder, text_encoder: TextEncoder) -> None:
        super().__init__()
        self.config, self.entity_names = config, list(entity_names)
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        text_encoder.freeze(config.text.trainable_layers)
        dim = config.embed_dim
        self.image_global = nn.Linear(image_encoder.dim, dim)
        self.image_local = nn.Linear(image_encoder.dim, dim)
        self.text_global = nn.Linear(text_encoder.dim, dim)
        self.text_local = nn.Linear(text_encoder.dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)),
                                        requires_grad=config.learn_logit_scale)
        self.decoder: EntityDecoder | None = None
        if config.decoder is not None:
            if entity_queries is None or len(entity_queries) != len(self.entity_names):
                raise ValueError("the entity decoder needs one query vector per entity name")
            self.register_buffer("entity_queries", entity_queries.float().clone())
            self.decoder = EntityDecoder(config.decoder, query_dim=entity_queries.shape[1], memory_dim=dim)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def encode_image(self, pixels: Tensor, keep: float = 1.0) -> ImageOutput:
        """Images [B, C, S, S], or studies of V views [B, V, C, S, S] fused into one item each: the views'
        projected global vectors averaged (then normalised), their regions concatenated [B, V·N, E]. A study
        with fewer views repeats them to fill V, which leaves every attention-weighted context unchanged
        (softmax over [r; r] weighs each copy half).

        `keep` < 1 is patch dropout inside the image encoder (`ImageEncoder.forward`; training only): `local`
        then holds each image's kept regions and `kept` their positions (view v's region p at v·h·w + p)."""
        views = pixels.shape[1] if pixels.dim() == 5 else 0
        features = self.image_encoder(pixels.flatten(0, 1) if views else pixels, keep)
        backbone = features.global_
        pooled = self.image_global(backbone)
        local = self.image_local(features.local)
        kept = features.kept
        if views:
            backbone = backbone.unflatten(0, (-1, views)).mean(1)
            pooled = pooled.unflatten(0, (-1, views)).mean(1)
            local = local.unflatten(0, (-1, views)).flatten(1, 2)
            if kept is not None:
                regions = features.grid[0] * features.grid[1]
                offsets = torch.arange(views, device=kept.device)[:, None] * regions
                kept = (kept.unflatten(0, (-1, views)) + offsets).flatten(1, 2)
        return ImageOutput(F.normalize(pooled, dim=-1), pooled, backbone, local, features.grid, features.attentions, kept)

    def encode_text(self, texts: list[str] | TextFeatures) -> TextOutput:
        """Texts, or their features from the text encoder already (a frozen encoder's cache)."""
        features = texts if isinstance(texts, TextFeatures) else self.text_encoder.features(texts)
        pooled = self.text_global(features.sentence)
        return TextOutput(F.normalize(pooled, dim=-1), pooled, self.text_local(features.words),
                          features.word_mask, features.word_spans, features.word_text)

    def entities(self, memory: Tensor, padding: Tensor | None = None, summary: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Entity logits [B, K, 3] (absent / present / uncertain) and the entities' maps [B, K, N] over `memory`
        (the last layer's cross-attention, or each entity's own attention when the decoder has `region_gamma`
        > 0; `EntityOutput`), memory being image regions or report words (`padding` marks the
        positions to ignore; `summary`, the item's unnormalised global vector `pooled`, which a from-scratch
        encoder's regions alone pass to the decoder too faintly: measured, the decoder without it learns the
        label priors only, while a linear probe of the global vector ranks the findings)."""
        if self.decoder is None:
            raise ValueError("this model has no entity decoder")
        return self.decoder(self.entity_queries, memory, padding, summary)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the whole model into `directory`, replacing what a previous save left there."""
        directory = Path(directory)
        built = sibling_directory(directory)
        try:
            with quiet_loading():  # no "Writing model shards" bar per encoder
                self.image_encoder.save_pretrained(built / "image")
                self.text_encoder.save_pretrained(built / "text")
            heads = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                     if not k.startswith(("image_encoder.", "text_encoder."))}
            save_file(heads, str(built / HEADS_NAME))
            (built / CONFIG_NAME).write_text(json.dumps(
                {"format": FORMAT_VERSION, "config": to_dict(self.config), "entity_names": self.entity_names}, indent=2))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(built, directory)
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise

    @staticmethod
    def saved_description(directory: str | Path) -> dict[str, Any]:
        """The saved model's format, config and entity names, read without its weights."""
        path = Path(directory) / CONFIG_NAME
        if not path.exists():
            raise MissingInputError(f"{directory} holds no trained alignment model (no {CONFIG_NAME})")
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DamagedFileError(f"model damaged: {path} ({error}); train the run again") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT_VERSION:
            raise InputError(f"{path} was written by another medkg version (format "
                             f"{saved.get('format') if isinstance(saved, dict) else None}, this version reads {FORMAT_VERSION})")
        return saved

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None) -> AlignmentModel:
        directory = Path(directory)
        saved = cls.saved_description(directory)
        config = from_dict(ModelConfig, saved["config"])
        try:  # a truncated or half-copied file: say which, never a stack trace
            image = ImageEncoder.from_pretrained(directory / "image", device="cpu")
            text = TextEncoder.from_pretrained(directory / "text", device="cpu")
            heads = load_file(str(directory / HEADS_NAME))
        except MedkgError:
            raise
        except Exception as error:
            raise DamagedFileError(f"model damaged: {directory} ({type(error).__name__}: {str(error)[:200]}); "
                                   "train the run again") from None
        queries = heads.get("entity_queries")
        model = cls(config, saved["entity_names"], queries, image, text)
        missing, unexpected = model.load_state_dict(heads, strict=False)
        missing = [k for k in missing if not k.startswith(("image_encoder.", "text_encoder."))]
        if missing or unexpected:
            raise DamagedFileError(f"{directory / HEADS_NAME} does not fit the model: missing {missing}, unexpected {unexpected}")
        return model.to(device or "cpu")

    def temperature(self) -> float:
        return 1 / math.exp(min(float(self.logit_scale.detach()), math.log(100)))
