"""Where a model looks for a finding, judged by the pointing game on expert boxes, beside baselines that never
look at the image.

Coordinates are continuous pixel coordinates of the image file: pixel (column i, row j) covers [i, i+1) x [j, j+1),
a box (x, y, w, h) covers [x, x+w] x [y, y+h]. The model sees the file resized (stretched if need be) to its
square input (`alignment.data.images`: every axis scaled, nothing cropped), so its region grid covers the whole
file and a map upsampled to the file's size lies on it.

- `attention_peak`: a map over the model's grid of regions, upsampled bilinearly to the file's pixel size; the peak
  is the centre of its highest pixel. Bilinear upsampling (half-pixel centres, borders replicated) is flat from
  a border cell's centre to the image border, so the highest value is often a plateau: ties go to the pixel
  nearest the image centre, which is the cell centre itself.
- the pointing game: a hit when the peak lies inside a box of that finding on that image; accuracy per finding,
  and their mean (findings weigh alike, whatever their box counts).
- baselines, each a point per (image, finding) scored the same way:
  `random`: a uniformly random point; its expected hit rate is the share of the image the finding's boxes cover
  (their union, clipped to the image), computed exactly rather than sampled;
  `centre`: the image centre;
  `prior`: one fixed point per finding (in image-relative coordinates), the point of a PRIOR_GRID x PRIOR_GRID grid
  of cell centres covered by the most training-split boxes of that finding (ties: nearest the centre; a finding
  without training boxes uses the centre).
  Each baseline is averaged per finding, then over findings, like the model's accuracy.
- `shared_peaks`: whether the maps tell findings apart at all. A decoder whose entity queries all attend alike
  draws one map per image whatever the finding (measured on the shared data: kad's decoder cross-attention, 0.93 of
  pairs, medkg's before its entity-region maps 0.97; those maps 0.15-0.18, word–region maps 0.10-0.21); its pointing
  game then only says where that one map lies.
  The share of pairs of findings whose maps have their highest region in common (the first of exact ties), per
  image, averaged: 1 is one map for all findings. It compares grid regions, not the upsampled peaks above.
Boxes are for evaluation only: nothing here trains on them but the prior baseline, and it reads the training split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .data.corpora import Box

PRIOR_GRID = 64


class Peak(NamedTuple):
    image: str
    label: str
    x: float
    y: float


def attention_peak(attention: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> tuple[float, float]:
    """(x, y) in file pixels of the maximum of `attention` ([h * w] or [h, w], row-major over `grid` = (h, w))
    upsampled bilinearly to `size` = (width, height) of the file."""
    h, w = grid
    width, height = size
    upsampled = F.interpolate(attention.detach().float().reshape(1, 1, h, w), size=(height, width), mode="bilinear",
                              align_corners=False)[0, 0]
    top = upsampled.max()
    tolerance = 1e-6 * max(float(top - upsampled.min()), 1e-12)
    rows, columns = torch.nonzero(upsampled >= top - tolerance, as_tuple=True)
    distance = (columns.double() + 0.5 - width / 2) ** 2 + (rows.double() + 0.5 - height / 2) ** 2
    best = int(torch.argmin(distance))
    return float(columns[best]) + 0.5, float(rows[best]) + 0.5


def inside(x: float, y: float, boxes: Iterable[Box]) -> bool:
    return any(b.x <= x <= b.x + b.w and b.y <= y <= b.y + b.h for b in boxes)


def covered_share(boxes: Sequence[Box], size: tuple[int, int]) -> float:
    """The share of the image (width, height) that the union of `boxes`, clipped to it, covers."""
    width, height = size
    clipped = [(max(b.x, 0.0), max(b.y, 0.0), min(b.x + b.w, width), min(b.y + b.h, height)) for b in boxes]
    clipped = [c for c in clipped if c[2] > c[0] and c[3] > c[1]]
    if not clipped:
        return 0.0
    xs = sorted({v for c in clipped for v in (c[0], c[2])})
    ys = sorted({v for c in clipped for v in (c[1], c[3])})
    area = 0.0
    for x0, x1 in pairwise(xs):
        for y0, y1 in pairwise(ys):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            if any(c[0] <= cx <= c[2] and c[1] <= cy <= c[3] for c in clipped):
                area += (x1 - x0) * (y1 - y0)
    return area / (width * height)


def prior_points(train_boxes: Iterable[tuple[Box, tuple[int, int]]], grid: int = PRIOR_GRID) -> dict[str, tuple[float, float]]:
    """{finding: (u, v)} in image-relative coordinates ([0, 1], multiply by the width and height): the grid point
    covered by the most training boxes of that finding (boxes given with their image's (width, height))."""
    centres = (np.arange(grid) + 0.5) / grid
    counts: dict[str, np.ndarray] = {}
    for box, (width, height) in train_boxes:
        inside_x = (centres >= box.x / width) & (centres <= (box.x + box.w) / width)
        inside_y = (centres >= box.y / height) & (centres <= (box.y + box.h) / height)
        counts.setdefault(box.label, np.zeros((grid, grid)))
        counts[box.label] += np.outer(inside_y, inside_x)
    points = {}
    for label, count in counts.items():
        rows, columns = np.nonzero(count == count.max())
        nearest = np.argmin((centres[columns] - 0.5) ** 2 + (centres[rows] - 0.5) ** 2)
        points[label] = (float(centres[columns[nearest]]), float(centres[rows[nearest]]))
    return points


def pointing_game(peaks: Iterable[Peak], boxes: dict[str, list[Box]]) -> dict[str, float]:
    """{finding: share of (image, finding) peaks inside a box of that finding on that image}, findings sorted."""
    hits: dict[str, list[bool]] = {}
    for peak in peaks:
        mine = [b for b in boxes.get(peak.image, []) if b.label == peak.label]
        hits.setdefault(peak.label, []).append(inside(peak.x, peak.y, mine))
    return {label: float(np.mean(v)) for label, v in sorted(hits.items())}


def baselines(cases: Iterable[tuple[str, str]], boxes: dict[str, list[Box]], sizes: dict[str, tuple[int, int]],
              priors: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """{"random" | "centre" | "prior": {finding: hit rate}} over the (image, finding) `cases`."""
    rates: dict[str, dict[str, list[float]]] = {"random": {}, "centre": {}, "prior": {}}
    for image, label in cases:
        mine = [b for b in boxes.get(image, []) if b.label == label]
        width, height = sizes[image]
        u, v = priors.get(label, (0.5, 0.5))
        rates["random"].setdefault(label, []).append(covered_share(mine, (width, height)))
        rates["centre"].setdefault(label, []).append(float(inside(width / 2, height / 2, mine)))
        rates["prior"].setdefault(label, []).append(float(inside(u * width, v * height, mine)))
    return {kind: {label: float(np.mean(v)) for label, v in sorted(by_label.items())} for kind, by_label in rates.items()}


def mean(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else float("nan")


def shared_peaks(maps: Iterable[Tensor | np.ndarray]) -> float:
    """The mean over images of the share of pairs of findings whose maps ([L, N] or [L, h, w] per image, one row per
    finding over the regions) peak at the same region; NaN without an image of two findings or more."""
    shares = []
    for grid in maps:
        if len(grid) < 2:
            continue
        peaks = grid.reshape(len(grid), -1).argmax(-1)
        same = peaks[:, None] == peaks[None, :]
        pairs = len(peaks) * (len(peaks) - 1)
        shares.append(float(same.sum() - len(peaks)) / pairs)
    return float(np.mean(shares)) if shares else float("nan")


def word_region_attention(words: Tensor, word_mask: Tensor, regions: Tensor, gamma: float) -> Tensor:
    """[N] attention over the regions [N, E] of the words [P, W, E] (mask [P, W]) of a finding's prompts, for models
    without an entity decoder: each real word's softmax over regions of γ·cos(word, region) (GLoRIA's word–region
    attention), averaged over a prompt's words, then over the prompts."""
    cos = F.normalize(words.float(), dim=-1) @ F.normalize(regions.float(), dim=-1).T  # [P, W, N]
    attention = (gamma * cos).softmax(-1) * word_mask[..., None]
    per_prompt = attention.sum(1) / word_mask.sum(1, keepdim=True).clamp_min(1)
    return per_prompt.mean(0)
