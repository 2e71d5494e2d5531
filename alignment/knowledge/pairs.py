"""Knowledge at the level of words and of pairs: which report words name a concept, and which report goes with an
image when the data set has no pairs.

`pseudo_pairs` serves the plain CLIP baseline on decoupled data (NIH images with labels, IU reports without those
images): each image is paired with a report whose label entities are present exactly where the image's are, else with
the report that overlaps it most. This is the setup MedCLIP was written to fix: a batch then holds many images and
reports with the same labels, and CLIP's one-hot targets push each image away from all of them but its own pseudo
report, so same-label pairs become false negatives. MedCLIP replaces those targets with label similarity (here
`entity_similarity` and the entity states); the pseudo pairs are what the baseline must fall back to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from alignment.states import PRESENT, UNKNOWN
from extract.model import Mention

CHUNK = 1024  # images scored against all reports at once


def word_concepts(texts: Sequence[str], mentions: Sequence[Sequence[Mention]], word_spans: Sequence[Sequence[tuple[int, int]]],
                  findings_only: bool = False) -> Tensor:
    """Bool [B, W] (W the most words of any text): word w of text b overlaps the character span of one of its mentions
    (with `findings_only`, of a mention outside INDICATION and HISTORY). `word_spans` are (start, end) character spans
    per word of each text, as a text encoder gives them; (0, 0) spans (special tokens, padding) are never True. The
    mentions' offsets must index `texts` (the `Report.text` they were found in): a mention whose span does not hold its
    text raises ValueError."""
    if not len(texts) == len(mentions) == len(word_spans):
        raise ValueError(f"{len(texts)} texts, {len(mentions)} mention lists and {len(word_spans)} span lists")
    width = max((len(spans) for spans in word_spans), default=0)
    result = torch.zeros(len(texts), width, dtype=torch.bool)
    for b, (text, found, spans) in enumerate(zip(texts, mentions, word_spans)):
        intervals = []
        for m in found:
            if text[m.start:m.end] != m.text:
                raise ValueError(f"text {b}: mention {m.text!r} is not at {m.start}-{m.end}; offsets must index the text given")
            if not findings_only or m.is_finding:
                intervals.append((m.start, m.end))
        if not intervals or not spans:
            continue
        span = torch.tensor([list(s) for s in spans], dtype=torch.long).reshape(-1, 2)
        mention = torch.tensor(intervals, dtype=torch.long)
        overlaps = (span[:, None, 0] < mention[None, :, 1]) & (span[:, None, 1] > mention[None, :, 0])
        result[b, : len(spans)] = overlaps.any(1) & (span[:, 1] > span[:, 0])
    return result


def pseudo_pairs(image_states: Tensor, report_states: Tensor, seed: int = 0, columns: Tensor | None = None) -> Tensor:
    """int64 [N]: the report of each image (module docstring). Compared on `columns` (default: the entities any image
    knows, i.e. the label entities), PRESENT against not present: a report whose present set equals the image's scores
    highest, then the largest Jaccard overlap of present sets; among equals, the report that also states absent (or
    uncertain) where the image is not present, then a random one (by `seed`)."""
    if image_states.dim() != 2 or report_states.dim() != 2 or image_states.shape[1] != report_states.shape[1]:
        raise ValueError(f"states of shapes {tuple(image_states.shape)} and {tuple(report_states.shape)} do not share entities")
    if not len(report_states):
        raise ValueError("no reports to pair images with")
    if columns is None:
        columns = (image_states != UNKNOWN).any(0)
    images, reports = image_states[:, columns], report_states[:, columns]
    k = images.shape[1]
    image_present, report_present = (images == PRESENT).double(), (reports == PRESENT).double()
    report_known_not_present = ((reports != UNKNOWN) & (reports != PRESENT)).double()
    # Jaccard values differ by at least 1/k^2; the tie-breakers stay below that and below each other.
    agree_weight = 0.25 / (k * k + 1)
    noise_weight = agree_weight / (2 * k + 2)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.empty(len(images), dtype=torch.long)
    for start in range(0, len(images), CHUNK):
        present = image_present[start:start + CHUNK]
        both = present @ report_present.T
        either = present.sum(1, keepdim=True) + report_present.sum(1) - both
        jaccard = torch.where(either > 0, both / either.clamp(min=1), torch.ones_like(both))  # 1: equal present sets
        agree = (1 - present) @ report_known_not_present.T / max(k, 1)
        noise = torch.rand(both.shape, generator=generator, dtype=torch.float64)
        score = jaccard + agree_weight * agree + noise_weight * noise
        chosen[start:start + CHUNK] = score.argmax(1)
    return chosen
