"""The collectives the losses need, explicit and written once, each the identity in a single process.

Contrastive losses compare every image with every report of the *global* batch, and Sinkhorn balances
prototype assignments over it, so under DDP each process gathers the other processes' features or
all-reduces sums. Every function here must be called by all processes in the same order (they are
collectives); with torch.distributed not initialised they return their input and cost nothing.
All processes must hold the same number of rows (`all_gather` needs equal shapes): drop incomplete batches.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_features(x: Tensor, with_grad: bool = False) -> Tensor:
    """`x` of every process concatenated along dim 0 in rank order.

    The local slice is `x` itself, so it keeps its gradient. `with_grad=False` (open_clip's default)
    treats the other processes' slices as constants: each process's gradient reaches only its own rows
    from its own loss. `with_grad=True` also sends back the gradient that the other processes' losses
    put on this process's rows (the backward all-reduces the gradient of the gathered tensor and keeps
    this process's slice), which is what makes DDP's gradient averaging equal the one-process gradient.
    """
    rank, size = world()
    if size == 1:
        return x
    if with_grad:
        return _GatherWithGrad.apply(x)
    parts = _all_gather(x.detach())
    parts[rank] = x
    return torch.cat(parts)


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of `x` over processes, detached; `x` itself is never modified."""
    return _all_reduce(x, "SUM")


def all_reduce_max(x: Tensor) -> Tensor:
    """Element-wise maximum of `x` over processes, detached; `x` itself is never modified."""
    return _all_reduce(x, "MAX")


def _all_reduce(x: Tensor, op: str) -> Tensor:
    if world()[1] == 1:
        return x.detach()
    out = x.detach().clone().contiguous()
    dist.all_reduce(out, op=getattr(dist.ReduceOp, op))
    return out


def _all_gather(x: Tensor) -> list[Tensor]:
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(world()[1])]
    dist.all_gather(parts, x)
    return parts


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns, to each process, the sum over processes of the gradient on its
    slice. Implemented with all_reduce so that it runs on every backend (gloo has no reduce_scatter)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.rows = x.shape[0]
        return torch.cat(_all_gather(x))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        rank, _ = world()
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[rank * ctx.rows:(rank + 1) * ctx.rows]
