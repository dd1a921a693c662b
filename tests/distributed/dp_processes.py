"""Run a function in two gloo processes (torch.multiprocessing, a file:// rendezvous)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, function: Callable[..., Any], args: Any) -> None:
    os.environ.setdefault("CLUE_DISABLE_PLUGINS", "1")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        function(rank, world, *args)
    finally:
        dist.destroy_process_group()


def spawn(function: Callable[..., Any], *args: Any, world: int = 2) -> None:
    """Run ``function(rank, world, *args)`` in ``world`` processes; raise if one fails.

    ``function`` must be importable (defined at module level), and it reports back by
    writing files (for example into a ``tmp_path`` passed in ``args``).
    """
    with tempfile.TemporaryDirectory() as folder:
        init_file = os.path.join(folder, "rendezvous")
        mp.start_processes(
            _worker, args=(world, init_file, function, args), nprocs=world, start_method="spawn"
        )
