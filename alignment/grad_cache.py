"""Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup"; BiomedCLIP trains its large contrastive batches with it): a training step whose activation memory
scales with a chunk of the batch, not with the batch, for the same gradient.

A contrastive loss couples every row of the batch with every other, so the batch cannot simply be split
into accumulated micro-batches. But the coupling is only in the loss: the encoders see each row alone.
`grad_cache_step` therefore
1. runs the encoders (`Objective.encode`) chunk by chunk without gradients, keeping only their outputs;
2. computes the whole objective (`Objective.losses`) on those outputs, detached and made leaves, and
   backpropagates it: this gives the gradients of the losses' own parameters (temperature, prototypes,
   entity decoder) and the gradient of every encoder output;
3. runs each chunk's encoders again, with gradients, and backpropagates the cached output gradients
   through them, chunk after chunk; parameter gradients accumulate to the full-batch gradient.
The encoders run twice: about one more forward pass of the encoders per step, the price of the memory.

Equal gradients need each chunk's second forward to repeat its first exactly: the RNG state (dropout,
patch dropout) is saved before each chunk's first pass and restored for its second, and the state after
the step is the one a plain step would leave behind its losses. BatchNorm is the exception: in training
mode it normalises with the statistics of the rows it sees, the chunk's and not the batch's, so a CNN with
BatchNorm trains a (slightly) different function under gradient caching; its running statistics are
updated once per chunk (the first pass's updates are undone). Transformers (LayerNorm) are row-wise and
give the plain gradient up to float rounding (`tests/test_grad_cache.py`).

Under DDP the step calls the objective itself, not the DDP wrapper: DDP's reducer only acts on backward
passes that follow a forward through the wrapper, so the chunk backward passes are never synchronised one by
one; the gradients are averaged over processes once, at the end of the step, with one all-reduce of all
of them (what DDP's averaging gives). The loss terms' own collectives (`alignment.distributed`) run as in
a plain step. DDP's buffer broadcast (rank 0's BatchNorm running statistics to the others) is skipped:
only rank 0 evaluates and saves, with its own statistics either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .distributed import world
from .objective import Encoded, Inputs, Objective


def grad_cache_step(objective: Objective, inputs: Inputs, chunk: int,
                    scale: Callable[[Tensor], Tensor] = lambda loss: loss,
                    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> dict[str, Tensor]:
    """Backpropagate `scale(loss)` of the batch `inputs` with the encoders run `chunk` rows at a time; the
    gradients accumulate into `.grad` as `scale(objective(inputs)["loss"]).backward()` would put them there
    (and are averaged over processes under torch.distributed). `scale` is where a GradScaler and
    accumulation divide the loss; `autocast` gives the precision context of the forward passes. Returns
    the loss terms, detached."""
    if chunk < 1:
        raise ValueError(f"grad cache chunk must be >= 1, got {chunk}")
    rows = len(inputs.texts)
    parts = [split_rows(inputs, slice(start, start + chunk), rows) for start in range(0, rows, chunk)]
    device = inputs.pixels.device
    states, outputs = [], []
    with torch.no_grad(), _batch_statistics_kept(objective):
        for part in parts:
            states.append(_RngState(device))
            with autocast():
                outputs.append(objective.encode(part))
    encoded = _leaves(concatenate(outputs))
    del outputs
    with autocast():
        terms = objective.losses(inputs, encoded)
    scale(terms["loss"]).backward()
    after = _RngState(device)
    start = 0
    for part, state in zip(parts, states):
        state.restore()
        with autocast():
            again = objective.encode(part)
        tensors, grads = [], []
        for out, leaf in zip(_tensors(again), _tensors(encoded)):
            if out.requires_grad and leaf.grad is not None:
                tensors.append(out)
                grads.append(leaf.grad[(slice(start, start + out.shape[0]),) + tuple(slice(0, d) for d in out.shape[1:])])
        if tensors:
            torch.autograd.backward(tensors, grads)
        start += len(part.texts)
    after.restore()
    if world()[1] > 1:
        average_gradients(objective)
    return {name: value.detach() for name, value in terms.items()}


def split_rows(value: Any, rows: slice, count: int) -> Any:
    """`value` (Inputs, TextFeatures, a tensor or list, nested) cut to `rows` of its `count` batch rows;
    anything without a batch dimension (region_keep) is kept whole."""
    if isinstance(value, Tensor):
        return value[rows] if value.dim() and value.shape[0] == count else value
    if isinstance(value, list):
        return value[rows] if len(value) == count else value
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: split_rows(getattr(value, f.name), rows, count) for f in fields(value) if f.init})
    return value


def concatenate(parts: list[Any]) -> Any:
    """The chunks' outputs (Encoded, nested dataclasses of tensors and lists) as one batch. Tensors are
    joined along rows, padded in the other dimensions to the widest chunk with zeros (False for masks):
    the text side pads words per chunk, and a padded word is masked wherever it is read."""
    first = parts[0]
    if isinstance(first, Tensor):
        shape = [max(p.shape[d] for p in parts) for d in range(1, first.dim())]
        padded = []
        for p in parts:
            if list(p.shape[1:]) != shape:
                wide = p.new_zeros((p.shape[0], *shape))
                wide[tuple(slice(0, d) for d in p.shape)] = p
                p = wide
            padded.append(p)
        return torch.cat(padded)
    if isinstance(first, list):
        return [row for p in parts for row in p]
    if is_dataclass(first) and not isinstance(first, type):
        return replace(first, **{f.name: concatenate([getattr(p, f.name) for p in parts]) for f in fields(first) if f.init})
    if first is None or all(p == first for p in parts):
        return first
    raise ValueError(f"chunks disagree on {first!r}")


def average_gradients(module: nn.Module) -> None:
    """Every `.grad` of `module` replaced by its mean over the processes (one all-reduce of them all, flat).
    Every process must hold gradients for the same parameters, as DDP requires too."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world()[1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _tensors(value: Any) -> Iterator[Tensor]:
    """The floating-point tensors of an encoder output, in a fixed order (the leaves that can get gradients)."""
    if isinstance(value, Tensor):
        if value.is_floating_point():
            yield value
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from _tensors(getattr(value, f.name))


def _leaves(encoded: Encoded) -> Encoded:
    """`encoded` with each floating-point tensor a detached leaf that collects its gradient."""

    def leaf(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.detach().requires_grad_(True) if value.is_floating_point() else value
        if is_dataclass(value) and not isinstance(value, type):
            return replace(value, **{f.name: leaf(getattr(value, f.name)) for f in fields(value) if f.init})
        return value

    return leaf(encoded)


class _RngState:
    """torch's global RNG state (the CPU generator, and the CUDA one of `device`), to replay a forward pass."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


@contextlib.contextmanager
def _batch_statistics_kept(module: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics (and counters) as they were before the block: the gradient-free first
    pass must not update them a second time."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats and m.training]
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None] for m in norms]
    try:
        yield
    finally:
        for m, buffers in zip(norms, saved):
            for current, before in zip([b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None],
                                       buffers):
                current.copy_(before)
