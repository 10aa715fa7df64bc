"""Spawning gloo process groups for the data-parallel tests."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(worker, world: int, *args, timeout: float = 300) -> None:
    """Run ``worker(rank, world, port, *args)`` on `world` spawned processes; fail if they do not finish in time."""
    import torch.multiprocessing as mp

    ctx = mp.spawn(worker, args=(world, free_port(), *args), nprocs=world, join=False)
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, f"the {world} gloo processes did not finish in time"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
