"""CLIP's symmetric InfoNCE over the global batch, with hard or soft targets, and the numerics every loss
here shares (float32 under autocast, soft cross-entropy).

Input convention: `image` and `text` are unit vectors [B, D] (this process's rows), `logit_scale` is the
*log* of the inverse temperature, a tensor so that it can be learned.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignment.distributed import gather_features, world

MAX_LOGIT_SCALE = math.log(100)  # CLIP: the learned scale stops at 100


def full_precision(x: Tensor) -> torch.autocast:
    """A context that turns autocast off on `x`'s device: logits, softmaxes and logs of a loss are computed
    in float32 (inputs cast with `.float()` inside it), whatever precision the encoders ran in."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of −Σ_j y_ij · log softmax(logits)_ij; `targets` rows sum to 1."""
    return -(targets * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


class ClipLoss(nn.Module):
    """L = ½[CE(s·I Tᵀ, Y) + CE(s·T Iᵀ, Y′)], s = exp(min(logit_scale, ln 100)).

    Y is the identity (CLIP, ConVIRT) unless soft targets are given: `targets` (image → text) and
    `text_targets` (text → image), both with rows summing to 1, given either for this process's rows
    [B_local, B_global] or for the whole global batch [B_global, B_global] (the loss then takes this
    process's rows). Soft targets computed over the global batch need the other processes' labels: gather
    them first with `alignment.distributed.gather_features`, as `MedClipLoss` does. Y′ is not Yᵀ in
    general (a row-softmax transposed is not a row-softmax), hence two arguments.

    Under DDP the features of all processes are gathered (`gather_features`):
    - `local_loss=False`: every process computes the whole global-batch loss (its value equals the
      one-process loss on the whole batch).
    - `local_loss=True` (open_clip's and BiomedCLIP's sharded loss): this process's rows against the
      global columns, labels arange + B·rank. Each process reports a different value; their mean is
      the global loss, at B_local × B_global instead of B_global² logits.
    - `gather_with_grad=True` (default) sends back to each process the gradient that every process's loss
      puts on its features, so with DDP's gradient averaging both modes give exactly the one-process
      gradient. `gather_with_grad=False` is open_clip's default: other processes' features are constants;
      with `local_loss=False` the gradient of each process's own features is exact but DDP's averaging
      divides it by the world size (relative to `logit_scale` and to the other loss terms); with
      `local_loss=True` the terms where this process's features are columns of another process's rows
      are dropped, a different objective that is only equal in expectation.
    The logits and the cross-entropies run in float32. The clamp at ln 100 is in the forward (open_clip
    clamps the parameter in place after each step): above it the scale gets no gradient.
    """

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = True) -> None:
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad

    def forward(self, image: Tensor, text: Tensor, logit_scale: Tensor, targets: Tensor | None = None,
                text_targets: Tensor | None = None) -> Tensor:
        if (targets is None) != (text_targets is None):
            raise ValueError("soft targets need both directions: targets (image → text) and text_targets")
        rank, _ = world()
        with full_precision(image):
            image, text = image.float(), text.float()
            all_image = gather_features(image, self.gather_with_grad)
            all_text = gather_features(text, self.gather_with_grad)
            scale = logit_scale.float().clamp(max=MAX_LOGIT_SCALE).exp()
            if self.local_loss:
                logits_image = scale * image @ all_text.T
                logits_text = scale * text @ all_image.T
                first = rank * image.shape[0]
            else:
                logits_image = scale * all_image @ all_text.T
                logits_text = logits_image.T
                first = 0
            rows = logits_image.shape[0]
            if targets is None:
                labels = torch.arange(first, first + rows, device=image.device)
                return (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_text, labels)) / 2
            return (soft_cross_entropy(logits_image, _rows(targets, first, logits_image))
                    + soft_cross_entropy(logits_text, _rows(text_targets, first, logits_text))) / 2


def _rows(targets: Tensor, first: int, logits: Tensor) -> Tensor:
    """The rows of `targets` that belong to `logits` (all of them, or this process's slice)."""
    rows, columns = logits.shape
    if targets.shape[1] != columns or targets.shape[0] not in (rows, columns):
        raise ValueError(f"targets of shape {tuple(targets.shape)} do not fit logits of shape {(rows, columns)}: "
                         f"give [{rows}, {columns}] or the global [{columns}, {columns}]")
    if targets.shape[0] != rows:
        targets = targets[first:first + rows]
    return targets.float()
