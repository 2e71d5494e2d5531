"""Tests that run several gloo processes on the loopback: one way to join them, start each one's process
group, finish within a deadline and leave no process behind when something fails."""

from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


def join_gloo(rank: int, port: int, world: int, timeout_s: int) -> None:
    """In a spawned process: join the process group on 127.0.0.1:`port`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s // 2))


def run_processes(worker: Callable[..., None], args: tuple[Any, ...], world: int, timeout_s: int) -> None:
    """`worker(rank, port, *args)` in `world` spawned processes; a failing process raises here with its
    traceback, and processes still alive at the end (a hang, a failure elsewhere) are killed."""
    context = mp.start_processes(worker, args=(free_port(), *args), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1):
            assert time.monotonic() < deadline, f"the {world} processes did not finish within {timeout_s} s"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
