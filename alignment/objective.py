"""The training objective: the model's forward pass and every loss term the config weighs in, as one
module, so that DDP sees one forward (and every parameter it uses) per step.

total = clip·L_global + gloria_local·L_GLoRIA-local + gloria_global·L_GLoRIA-global + mgca_cta·L_CTA
        + prototype·(L_swap + prototype_anchor·L_anchor) + entity_image·L_entity(image) + entity_text·L_entity(report)
        + entity_region·L_entity-region(image)

L_global is CLIP's InfoNCE with hard targets, MedCLIP's label soft targets, or medkg's knowledge soft
targets (`loss.targets`); each term's formula is in its module under `alignment.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encoders.text import TextFeatures
from extract.model import Mention

from .config import LossConfig
from .knowledge import word_concepts
from .losses import (ClipLoss, EntityLoss, EntityRegionContrast, GloriaLoss, KnowledgeClipLoss, KnowledgePrototypes, MedClipLoss,
                     TokenAlignmentLoss)
from .model import AlignmentModel, ImageOutput, TextOutput
from .targets import knowledge_word_weights


@dataclass
class Inputs:
    pixels: Tensor                                  # [b, C, S, S] transformed images
    texts: list[str]                                # [b] report texts
    image_states: Tensor                            # [b, K] entity states of the images (alignment.states)
    text_states: Tensor                             # [b, K] entity states of the reports
    mentions: list[list[Mention]]                   # each report's concept mentions (offsets index its text)
    region_keep: float = 1.0                        # share of image regions kept (patch dropout)
    text_features: TextFeatures | None = None       # the texts' encoder features, when a frozen encoder's cache has them


@dataclass
class Encoded:
    """What `Objective.encode` gives `Objective.losses`: both sides' projected encoder outputs."""
    image: ImageOutput
    text: TextOutput


class Objective(nn.Module):
    def __init__(self, model: AlignmentModel, config: LossConfig, entity_similarity: Tensor | None,
                 prototype_anchors: Tensor | None) -> None:
        super().__init__()
        self.model, self.config = model, config
        c = config
        if c.targets == "hard":
            self.global_loss: nn.Module = ClipLoss(c.local_loss)
        elif c.targets == "medclip":
            self.global_loss = MedClipLoss(c.target_temperature, local_loss=c.local_loss)
        else:
            if entity_similarity is None:
                raise ValueError("knowledge targets need the entities' similarity")
            self.global_loss = KnowledgeClipLoss(entity_similarity, c.target_temperature, local_loss=c.local_loss)
        self.gloria = GloriaLoss(*c.gloria_gamma, local_weight=c.gloria_local, global_weight=c.gloria_global,
                                 local_loss=c.local_loss) if c.gloria_local or c.gloria_global else None
        self.cta = TokenAlignmentLoss(c.cta_temperature) if c.mgca_cta else None
        self.prototypes = KnowledgePrototypes(
            c.prototypes, model.config.embed_dim,
            prototype_anchors[: c.prototypes] if c.anchor_prototypes and prototype_anchors is not None else None, c.prototype_anchor,
            c.sinkhorn_epsilon, c.sinkhorn_iterations, c.prototype_temperature) if c.prototype else None
        self.entity = EntityLoss() if c.entity_image or c.entity_text else None
        self.entity_region = EntityRegionContrast() if c.entity_region else None

    @property
    def uses_words(self) -> bool:
        return self.gloria is not None or self.cta is not None or bool(self.config.entity_text)

    def forward(self, inputs: Inputs) -> dict[str, Tensor]:
        return self.losses(inputs, self.encode(inputs))

    def encode(self, inputs: Inputs) -> Encoded:
        """Both encoders with their projections, row by row independent of the other rows (but for
        BatchNorm's batch statistics): the part that gradient caching (`alignment.grad_cache`) runs in chunks.
        Patch dropout (`inputs.region_keep` < 1) happens in the image encoder: ViT and DINOv2 run on the kept
        patch tokens only; CNNs drop regions after the encoder (see `ImageEncoder.forward`)."""
        model = self.model
        image = model.encode_image(inputs.pixels, inputs.region_keep)
        text = model.encode_text(inputs.text_features if inputs.text_features is not None else inputs.texts)
        return Encoded(image, text)

    def losses(self, inputs: Inputs, encoded: Encoded) -> dict[str, Tensor]:
        """Every loss term, and their weighted sum under "loss", on the whole batch's encoder outputs."""
        c, model = self.config, self.model
        image, text = encoded.image, encoded.text
        regions = image.local  # only the kept regions after patch dropout
        terms: dict[str, Tensor] = {}
        if c.clip:
            if c.targets == "hard":
                terms["clip"] = self.global_loss(image.global_, text.global_, model.logit_scale)
            else:
                terms["clip"] = self.global_loss(image.global_, text.global_, model.logit_scale,
                                                 inputs.image_states, inputs.text_states)
        weights = None
        if c.concept_word_weight != 1 and (self.gloria is not None or self.cta is not None):
            concept_words = word_concepts(inputs.texts, inputs.mentions, text.word_spans, findings_only=True)
            concept_words = concept_words[:, : text.word_mask.shape[1]].to(text.word_mask.device)
            weights = knowledge_word_weights(concept_words, text.word_mask, c.concept_word_weight)
        if self.gloria is not None:
            gloria = self.gloria(text.words, text.word_mask, regions, image.global_, text.global_, weights)
            terms["gloria_local"], terms["gloria_global"] = gloria["local"], gloria["global"]
        if self.cta is not None:
            terms["mgca_cta"] = self.cta(text.words, text.word_mask, regions, weights)["loss"]
        if self.prototypes is not None:
            prototypes = self.prototypes(image.global_, text.global_)
            terms["prototype"], terms["prototype_anchor"] = prototypes["swap"], prototypes["anchor"]
        if self.entity is not None:
            sides = [(name, memory, padding, summary, states) for name, memory, padding, summary, states, weight in (
                ("entity_image", regions, None, image.pooled, inputs.image_states, c.entity_image),
                ("entity_text", text.words, ~text.word_mask, text.pooled, inputs.text_states, c.entity_text)) if weight]
            for side, logits in zip(sides, _decode_together(model, sides)):
                terms[side[0]] = self.entity(logits, side[4])
        if self.entity_region is not None:
            scores = model.decoder.region_attention(model.entity_queries, regions)[1]
            terms["entity_region"] = self.entity_region(scores, inputs.image_states)
        terms["loss"] = self.total(terms)
        return terms

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        c = self.config
        weight = {"clip": c.clip, "gloria_local": c.gloria_local, "gloria_global": c.gloria_global, "mgca_cta": c.mgca_cta,
                  "prototype": c.prototype, "prototype_anchor": c.prototype * c.prototype_anchor,
                  "entity_image": c.entity_image, "entity_text": c.entity_text, "entity_region": c.entity_region}
        return sum(weight[name] * value for name, value in terms.items())


def _decode_together(model: AlignmentModel, sides: list[tuple]) -> list[Tensor]:
    """Entity logits of each side (image regions, report words) from ONE decoder pass over both, their
    memories padded to a common length: the same result as one pass per side, at about half the cost on a
    CPU, where the small decoder's time goes to per-call overhead rather than arithmetic."""
    if len(sides) == 1:
        _, memory, padding, summary, _ = sides[0]
        return [model.entities(memory, padding, summary)[0]]
    length = max(memory.shape[1] for _, memory, *_ in sides)
    memories, paddings = [], []
    for _, memory, padding, _, _ in sides:
        extra = length - memory.shape[1]
        mask = padding if padding is not None else memory.new_zeros(memory.shape[:2], dtype=torch.bool)
        memories.append(F.pad(memory, (0, 0, 0, extra)))
        paddings.append(F.pad(mask, (0, extra), value=True))
    logits = model.entities(torch.cat(memories), torch.cat(paddings), torch.cat([s[3] for s in sides]))[0]
    return list(logits.split([memory.shape[0] for _, memory, *_ in sides]))
