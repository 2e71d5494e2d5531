"""What the training graph's shape says about an answer: scores that any link predictor can be combined
with (`embed.ensemble`), each a function (anchors, relations, predict_tail) -> [batch, num_entities].

Three signals that the text and embedding models miss on the open radiology graph (docs/BENCHMARKS.md):

- `DegreePrior`, how many r-edges a candidate already has. Most concepts have one IS_A parent, so a
  concept that already has one is rarely the child that a query asks for: two thirds of the validation
  split's IS_A children have no parent in training, against 12% of all concepts. Findings, modifiers
  and places each fill their own slots as well. The model is log-linear over each entity's slot features
  phi(x) = [log(1 + out_r(x)), log(1 + in_r(x)), out_r(x) == 0, in_r(x) == 0 for every relation r], with
  one weight vector per relation and direction: score(x | r, side) = w_(r, side) . phi(x). It is fitted
  by softmax cross-entropy over all entities on the training triples, with the predicted edge left out
  of its own answer's degree (leave one out). Without that, every training answer would carry the edge
  being asked about, and the fit would learn the opposite of what a held-out edge looks like.
- `NeighbourText.resembles_answers`, text similarity carried along the graph's edges: for (a, r, ?),
  x scores max cos(x, y) over the anchor's known answers y ((a, r, y) in training; at most
  `MAX_ANSWERS` of them, 0 without any, so that a hub with thousands of children costs no more than a small parent),
  the cosines taken between the run's text features. Siblings read alike, so an orphan that reads like
  a parent's other children is its likely missing child. It has no parameters; the ensemble's weight
  sets its temperature. (Its mirror image, scoring x by the nearest of x's own known answers to the
  anchor, was measured too: it ranks well alone, valid MRR 0.17, but adds nothing beside the text
  predictor, which already reads the anchor, and the ensemble gave it weight 0.)
- `irreflexive`, the relations that never link a concept to itself in training: for them the anchor is
  never its own answer. A concept's text is nearest its own, so every text score (and RotatE, whose
  relation rotations are small) ranks the anchor near the top; the ensemble (`embed.ensemble.combine`)
  ranks it last instead. On the open graph no relation has a self-loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .evaluate import ScoreAll
from .triples import KnownTriples, Triples

COSINE_SCALE = 20.0  # cosines into logits on the scale of a trained model's (a temperature of 0.05)
MAX_ANSWERS = 8
LOGITS_PER_STEP = 2**25  # a step's [batch, entities] logits: all 512 rows of the open graph, 32 of a 1M-concept one


def slot_degrees(train: Triples) -> tuple[Tensor, Tensor]:
    """([R, N] out-degree, [R, N] in-degree) of every entity per relation in `train`."""
    shape = (train.num_relations, train.num_entities)
    ones = torch.ones(len(train))
    out = torch.zeros(shape).index_put_((train.relations, train.heads), ones, accumulate=True)
    into = torch.zeros(shape).index_put_((train.relations, train.tails), ones, accumulate=True)
    return out, into


def irreflexive(train: Triples) -> Tensor:
    """[R] bool: the relations without any (x, r, x) triple in `train` (module docstring)."""
    looped = torch.zeros(train.num_relations, dtype=torch.bool)
    looped[train.relations[train.heads == train.tails]] = True
    return ~looped


def slot_features(out: Tensor, into: Tensor) -> Tensor:
    """[..., 4R] features of degrees given as [R, ...] (the layout of `slot_degrees`)."""
    rows = torch.cat([torch.log1p(out), torch.log1p(into), (out == 0).float(), (into == 0).float()], dim=0)
    return rows.movedim(0, -1)


class DegreePrior:
    """score(x | r, side) = w_(r, side) . phi(x); `weights` is [2R, 4R] (tail queries first, then head)."""

    def __init__(self, train: Triples, weights: Tensor | None = None):
        self.num_relations = train.num_relations
        self.out, self.into = slot_degrees(train)
        self.features = slot_features(self.out, self.into)  # [N, 4R]
        self.weights = weights if weights is not None else torch.zeros(2 * self.num_relations, self.features.shape[1])

    def __call__(self, anchors: Tensor, relations: Tensor, predict_tail: bool) -> Tensor:
        rows = relations if predict_tail else relations + self.num_relations
        return self.weights[rows.cpu()] @ self.features.T

    def fit(self, train: Triples, steps: int = 80, batch_size: int = 512, lr: float = 0.1, seed: int = 0) -> DegreePrior:
        """Softmax cross-entropy over all entities, the edge asked about removed from its answer's degree."""
        generator = torch.Generator().manual_seed(seed)
        weights = self.weights.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([weights], lr=lr)
        size = max(16, min(batch_size, len(train), LOGITS_PER_STEP // train.num_entities))  # [size, N] logits a step
        for _ in range(steps):
            pick = torch.randint(0, len(train), (size,), generator=generator)
            h, r, t = train.heads[pick], train.relations[pick], train.tails[pick]
            row = torch.arange(len(pick))
            loss = torch.zeros(())
            for predict_tail, answer in ((True, t), (False, h)):
                w = weights[r if predict_tail else r + self.num_relations]  # [B, 4R]
                logits = w @ self.features.T
                out, into = self.out[:, answer].clone(), self.into[:, answer].clone()  # [R, B]
                (into if predict_tail else out)[r, row] -= 1  # leave the edge out
                logits[row, answer] = (w * slot_features(out, into)).sum(-1)
                loss = loss + F.cross_entropy(logits, answer)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.weights = weights.detach()
        return self


class NeighbourText:
    """Cosine similarities of text features carried along the training edges (module docstring)."""

    def __init__(self, train: Triples, features: Tensor):
        self.vectors = F.normalize(features.float(), dim=-1)
        self.num_entities = train.num_entities
        self.known = KnownTriples(train)

    def resembles_answers(self, anchors: Tensor, relations: Tensor, predict_tail: bool) -> Tensor:
        anchors, relations = anchors.cpu(), relations.cpu()
        rows, answers = self.known.tails(anchors, relations) if predict_tail else self.known.heads(relations, anchors)
        counts = torch.bincount(rows, minlength=len(anchors))
        position = torch.arange(len(rows)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        kept = position < MAX_ANSWERS  # rows come grouped, answers in id order
        width = int(counts.clamp(max=MAX_ANSWERS).max()) if len(rows) else 0
        padded = torch.zeros(len(anchors), max(width, 1), self.vectors.shape[1])  # a zero vector: cosine 0
        padded[rows[kept], position[kept]] = self.vectors[answers[kept]]
        scores = torch.empty(len(anchors), self.num_entities)
        for start in range(0, len(anchors), 64):  # [64, width, N] at a time
            scores[start:start + 64] = (padded[start:start + 64] @ self.vectors.T).amax(1)
        scores[counts == 0] = 0.0
        return COSINE_SCALE * scores


def structure_scorers(train: Triples, features: Tensor | None, prior: DegreePrior) -> dict[str, ScoreAll]:
    """The named structure scores of a run: its (fitted) degree prior and, with text features,
    `resembles answers`."""
    scorers: dict[str, ScoreAll] = {"degree prior": prior}
    if features is not None:
        scorers["resembles answers"] = NeighbourText(train, features).resembles_answers
    return scorers
