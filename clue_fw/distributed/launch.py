"""Launch and session: how a process learns it is one of several (torchrun's
environment), checks what the processes must agree on before they meet, joins the
process group and leaves it together."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from clue_fw.distributed.processes import SINGLE, Distributed
from clue_fw.errors import ClueError, RecipeError

TIMEOUT_ENV = "CLUE_DIST_TIMEOUT"
"""Seconds a process waits in a collective for the others (default: torch's)."""
FORCE_ENV = "CLUE_DATA_PARALLEL"
"""``1``: a torchrun world of one process runs the data-parallel step all the same (a
process group of one), to measure what that machinery costs on one GPU against a
plain run (``benchmarks/ddp.py --stages overhead``). Unset or ``0``: a plain run."""


@dataclass(frozen=True)
class Launch:
    """This process's place in a data-parallel run: ``rank`` of ``world_size`` processes,
    ``local_rank`` on its machine (which GPU it uses)."""

    rank: int
    world_size: int
    local_rank: int


def launch_from_environment(environ: dict[str, str] | None = None) -> Launch | None:
    """The data-parallel launch this process is part of, or None for a one-process run.

    An initialised default process group (a caller that set one up) decides; otherwise
    the variables torchrun sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``). A world of
    one process is a plain run, unless :data:`FORCE_ENV` is ``1``.
    """
    env = os.environ if environ is None else environ
    forced = _forced(env)
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        local = _env_int(env, "LOCAL_RANK", default=rank)
        return Launch(rank, world, local) if world > 1 or forced else None
    if "WORLD_SIZE" not in env:
        return None
    world = _env_int(env, "WORLD_SIZE")
    if world < 1:
        raise ClueError(
            f"WORLD_SIZE={env['WORLD_SIZE']!r}: the number of processes must be at least 1. "
            "Start data-parallel runs with torchrun, which sets it, or unset WORLD_SIZE."
        )
    if world == 1 and not forced:
        return None
    if "RANK" not in env:
        raise ClueError(
            f"WORLD_SIZE={world} but RANK is not set, so this process does not know which "
            "part of the work is its own. Start data-parallel runs with torchrun, which sets "
            "WORLD_SIZE, RANK and LOCAL_RANK, or unset WORLD_SIZE for a one-process run."
        )
    rank = _env_int(env, "RANK")
    local = _env_int(env, "LOCAL_RANK", default=rank)
    if not 0 <= rank < world or local < 0:
        raise ClueError(
            f"RANK={rank} and LOCAL_RANK={local} do not fit WORLD_SIZE={world} (RANK must be "
            f"in 0..{world - 1}). Start data-parallel runs with torchrun, which sets them."
        )
    return Launch(rank, world, local)


def _forced(env: Any) -> bool:
    raw = env.get(FORCE_ENV, "").strip()
    if raw not in ("", "0", "1"):
        raise ClueError(
            f"{FORCE_ENV}={raw[:40]!r} must be 1 (a torchrun world of one process runs the "
            "data-parallel step, to measure its cost) or 0 (a plain run)."
        )
    return raw == "1"


def _env_int(env: Any, name: str, default: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        if default is None:
            raise ClueError(f"{name} is not set; start data-parallel runs with torchrun.")
        return default
    if not raw.strip().isdigit():
        raise ClueError(
            f"{name}={raw[:40]!r} is not a whole number. Start data-parallel runs with "
            "torchrun, which sets WORLD_SIZE, RANK and LOCAL_RANK, or unset them."
        )
    return int(raw)


def check_batch_sizes(batch_sizes: dict[str, int], world_size: int) -> None:
    """Refuse a training ``batch_size`` that ``world_size`` processes cannot share evenly.

    ``batch_sizes``: the global batch of each stage that trains, by recipe section
    (:func:`clue_fw.recipe.training_batch_sizes`); each process trains on
    ``batch_size / world_size`` rows of it.
    """
    for stage, size in batch_sizes.items():
        if size % world_size:
            up = -(-size // world_size) * world_size
            raise RecipeError(
                f"{stage}.train.batch_size: {size} rows cannot be shared by the {world_size} "
                f"processes of this run (WORLD_SIZE={world_size}): batch_size is the global "
                f"batch, and each process trains on batch_size / {world_size} rows of it. "
                f"Use a multiple of {world_size} (e.g. --set {stage}.train.batch_size={up}), "
                "or start a number of processes that divides it."
            )


def rank_device(device: torch.device, requested: str, launch: Launch) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when the run uses CUDA, else CPU."""
    if device.type == "cuda":
        if ":" in requested:
            raise RecipeError(
                f"device: {requested} names one GPU, but under torchrun each process uses "
                "its own (cuda:LOCAL_RANK). Write device: cuda or auto."
            )
        count = torch.cuda.device_count()
        if launch.local_rank >= count:
            raise ClueError(
                f"LOCAL_RANK={launch.local_rank}, but this machine has {count} GPU"
                f"{'s' * (count != 1)}: start at most {count} processes per machine "
                "(torchrun --nproc_per_node)."
            )
        return torch.device("cuda", launch.local_rank)
    if device.type != "cpu":
        raise RecipeError(
            f"device: {requested} cannot run data-parallel training (torchrun runs on CUDA "
            "with NCCL or on the CPU with gloo). Use device: cuda, cpu or auto."
        )
    return device


@contextmanager
def session(launch: Launch | None, device: torch.device) -> Iterator[Distributed]:
    """The :class:`Distributed` of a run: joins (and at the end leaves) the process group
    when ``launch`` is a data-parallel one and no group exists yet."""
    if launch is None:
        yield SINGLE
        return
    created = False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        options: dict[str, Any] = {}
        timeout = os.environ.get(TIMEOUT_ENV)
        if timeout is not None:
            if not timeout.strip().isdigit() or int(timeout) < 1:
                raise ClueError(
                    f"{TIMEOUT_ENV}={timeout[:40]!r} must be a whole number of seconds."
                )
            options["timeout"] = timedelta(seconds=int(timeout))
        if device.type == "cuda":
            options["device_id"] = device
        try:
            dist.init_process_group(
                backend, rank=launch.rank, world_size=launch.world_size, **options
            )
        except (ValueError, RuntimeError) as exc:
            raise ClueError(
                f"Cannot join the {launch.world_size}-process group as rank {launch.rank} "
                f"({backend}): {exc}. Start data-parallel runs with torchrun, which sets "
                "MASTER_ADDR and MASTER_PORT (docs/distributed.md)."
            ) from None
        created = True
    elif dist.get_backend() == "nccl" and device.type != "cuda":
        raise RecipeError(
            "The process group uses NCCL, which needs CUDA tensors, but the recipe runs on "
            f"{device}. Use device: cuda or auto, or a gloo process group."
        )
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    ok = False
    try:
        yield Distributed(launch.rank, launch.world_size, comm, parallel=True)
        ok = True
    finally:
        # A failed process may have left the others in another collective (a crash on one
        # rank mid-step): a barrier here would wait with them until the group's timeout.
        # It leaves the group to the process exit instead (clue_fw.cli.main: at once, after
        # telling the others through the group's store, announce_failure).
        if created and ok:
            _leave_together()


def _leave_together() -> None:
    """Leave the process group with every process at the same point. Without the
    barrier, rank 0 (which hosts the rendezvous store) could tear the group down while
    another process's gloo threads still use it, and that process aborted at exit
    ("terminate called without an active exception", seen in about 1 of 4 runs)."""
    try:
        dist.barrier()
    except (RuntimeError, ValueError):  # another process is already gone: leave anyway
        pass
    dist.destroy_process_group()
