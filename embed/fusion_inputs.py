"""Entity inputs for `encoders.fusion.KnowledgeFusion`: concept vectors aligned to the tokens of texts,
from entity-extraction mentions (character spans) and the tokenizer's offset mapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
from torch import Tensor


class Span(Protocol):
    """What is needed of a mention (`extract.model.Mention` is one): a concept id and a character span."""

    id: str
    start: int
    end: int


def entity_inputs(mentions: Sequence[Sequence[Span]], offsets: Tensor, rows: Mapping[str, int],
                  vectors: Tensor) -> tuple[Tensor, Tensor]:
    """Entity embeddings [B, T, d] and mask [B, T] for a tokenised batch: a token overlapping the span of a
    mention of text b gets that concept's row of `vectors` ([num_concepts, d], `rows` maps concept id to row).

    `offsets` [B, T, 2] is the tokenizer's `offset_mapping`; special and padding tokens, (0, 0), get no
    entity. Where mentions overlap ("pleural effusion" and "effusion") the longer one wins, being the more
    specific; mentions of concepts without a row are skipped."""
    offsets = offsets.to(vectors.device)
    index = torch.full(offsets.shape[:2], -1, dtype=torch.long, device=vectors.device)
    starts, ends = offsets.unbind(-1)
    for b, text_mentions in enumerate(mentions):
        for mention in sorted(text_mentions, key=lambda m: m.end - m.start):
            if mention.id in rows:
                inside = (starts[b] < mention.end) & (ends[b] > mention.start) & (ends[b] > starts[b])
                index[b, inside] = rows[mention.id]
    mask = index >= 0
    return vectors[index.clamp(min=0)] * mask.unsqueeze(-1).to(vectors.dtype), mask
