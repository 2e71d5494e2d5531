"""Where a training process runs: its device, its place among `torchrun` processes, its autocast.

One code path for CPU and CUDA: the device is a config value (default: CUDA when present), every tensor
follows it, and nothing calls `.cuda()`. Under `torchrun` each process takes the GPU of its local rank
and the NCCL backend, or gloo on CPUs, so the same command runs on a laptop, one GPU or several nodes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from encoders.device import resolve_device


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def agree(self, value: int) -> int:
        """Rank 0's `value` on every process: decisions from wall-clock time must not differ between ranks."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.broadcast(tensor, 0)
        return int(tensor.item())

    def autocast(self, precision: str) -> contextlib.AbstractContextManager:
        """bf16/fp16 autocast on CUDA; the CPU runs fp32 (CPU autocast is slower than fp32 here)."""
        if self.device.type != "cuda" or precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def start(device: str = "") -> Runtime:
    """The runtime of this process; initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Runtime(resolve_device(device or None), 0, 1, 0)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device or None)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Runtime(chosen, dist.get_rank(), dist.get_world_size(), local_rank)


def stop(runtime: Runtime) -> None:
    if runtime.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
