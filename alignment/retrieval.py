"""Cross-modal retrieval by cosine similarity of the global vectors.

- Paired corpora (each study has its own report): image→report and report→image Recall@K, the share of queries
  whose own partner is among the K most similar candidates. A study's image vector is the mean of its views'
  unit vectors, renormalised (what `AlignmentModel.encode_image` does with the views of a study).
- Decoupled data (images with labels, reports from another corpus): image→report precision@K, the share of the K
  retrieved reports that are relevant to the image (`relevance`), beside `chance`, the share of relevant reports
  among all candidates (averaged over images): the precision of a random ranking.
Ties between equal similarities are broken by candidate order (stable), never in the model's favour.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

KS = (1, 5, 10)


def ranks_of_truth(similarity: Tensor, truth: Tensor) -> Tensor:
    """[Q] 0-based rank of candidate truth[q] in query q's ranking (a tie with a better-placed candidate counts
    against it: rank = candidates strictly more similar + equally similar ones listed before it)."""
    own = similarity.gather(1, truth[:, None])
    better = (similarity > own).sum(1)
    index = torch.arange(similarity.shape[1], device=similarity.device)[None, :]
    tied_before = ((similarity == own) & (index < truth[:, None])).sum(1)
    return better + tied_before


def recall_at(similarity: Tensor, truth: Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """{"R@k": share of queries (rows) whose candidate truth[q] is among their k most similar}."""
    ranks = ranks_of_truth(similarity, truth)
    return {f"R@{k}": float((ranks < k).float().mean()) for k in ks}


def precision_at(similarity: Tensor, relevant: Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """{"P@k": mean over queries of the share of relevant candidates among its k most similar}."""
    order = torch.from_numpy(np.argsort(-similarity.cpu().numpy(), axis=1, kind="stable"))
    ranked = relevant.cpu().gather(1, order).float()
    return {f"P@{k}": float(ranked[:, :k].mean(1).mean()) for k in ks if k <= similarity.shape[1]}


def relevance(image_present: Tensor, report_present: Tensor) -> Tensor:
    """[Q, C] bool: a report is relevant to an image when it states present at least one of the image's present
    labels; to an image without any (normal), when it states none. `image_present` [Q, L], `report_present` [C, L]
    bool over the same labels."""
    shared = (image_present.float() @ report_present.float().T) > 0
    normal = ~image_present.any(1)[:, None] & ~report_present.any(1)[None, :]
    return shared | normal


def fuse_views(vectors: Tensor, groups: list[list[int]]) -> Tensor:
    """[G, E]: the unit vectors of each group's rows averaged and renormalised."""
    return torch.nn.functional.normalize(torch.stack([vectors[g].mean(0) for g in groups]), dim=-1)
