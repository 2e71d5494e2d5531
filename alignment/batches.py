"""Which items make each batch: a function of (seed, epoch) alone, so that a resumed run sees the batches
an uninterrupted one would, and each DDP process takes its own slice of the same global batch.

The global batch size is the contrastive batch: with W processes each holds B/W rows, and the losses
gather the rest, so one process with B rows and W processes with B/W each train the same objective.
Incomplete last batches are dropped: a contrastive loss over a handful of rows is a different loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from kg.errors import InputError


@dataclass(frozen=True)
class Batch:
    images: Tensor   # [b] rows of the training images
    reports: Tensor  # [b] rows of the training reports


def generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator for one purpose (`stream`) in one epoch, independent of everything run before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1_009 + stream)


def batches_per_epoch(items: int, batch_size: int) -> int:
    if items < batch_size:
        raise InputError(f"{items} training items cannot fill one batch of {batch_size}; lower train.batch_size")
    return items // batch_size


def epoch_batches(num_images: int, num_reports: int, batch_size: int, seed: int, epoch: int,
                  pair: Callable[[Tensor, int], Tensor] | None, rank: int = 0, world: int = 1) -> Iterator[Batch]:
    """This process's slice of each global batch of an epoch.

    `pair(image_rows, epoch)` gives each image its report (paired corpora and pseudo-pairs); None draws
    reports independently of images, cycling through a fresh permutation of the reports."""
    if batch_size % world:
        raise InputError(f"train.batch_size {batch_size} is not divisible by the {world} processes")
    images = torch.randperm(num_images, generator=generator(seed, epoch, 0))
    if pair is None:
        needed = batches_per_epoch(num_images, batch_size) * batch_size
        rounds = -(-needed // num_reports)
        reports = torch.cat([torch.randperm(num_reports, generator=generator(seed, epoch, 1 + r)) for r in range(rounds)])
    else:
        reports = pair(images, epoch)
    share = batch_size // world
    for start in range(0, batches_per_epoch(num_images, batch_size) * batch_size, batch_size):
        rows = slice(start + rank * share, start + (rank + 1) * share)
        yield Batch(images[rows], reports[rows])
