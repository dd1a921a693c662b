"""Data-parallel training under ``torchrun``: one process per device, the recipe's batches.

``torchrun --nproc_per_node N -m clue_fw run RECIPE`` (or ``clue run`` started by
torchrun) runs N processes that train one model together (``docs/distributed.md``):

* **Batches.** Every process holds the examples and draws the same order from the
  per-epoch generators (seeded from (seed, stage, epoch)), cuts the same *global*
  batches of the recipe's ``batch_size`` and trains on its part of each
  (:class:`~clue_fw.data.examples.Shard`). A ``batch_size`` that the number of processes
  does not divide is refused (:func:`check_batch_sizes`).
* **Loss and gradients.** Each process scales its loss by its share of the global batch
  (:class:`ShardedStep`; exactly 1 when the batch splits evenly), and
  :class:`GradientSync` averages the gradients after every backward pass, in buckets.
  Explicit views (mask, crop, permute) are drawn for the whole global batch
  (:class:`GlobalView`), so every row gets the randomness it gets in one process.
* **BatchNorm** layers use the statistics of the global batch
  (:class:`GlobalBatchNorm1d`, :func:`convert_batchnorm`), on CPU (gloo) and CUDA
  (NCCL) alike; their state dict is BatchNorm1d's, so checkpoints are interchangeable.
* **Evaluation.** Each process scores its whole batches of the users, and the per-batch
  metric sums are added in one process's order (:meth:`Distributed.evaluate`): the
  metrics equal one process's to the bit.
* **Files.** Only rank 0 locks, reads and writes the run directory. What it decides
  (the run directory, a resumed stage, a checkpoint) reaches the others by broadcast
  (:meth:`Distributed.on_main`), and so does a refusal: every process raises the same
  error and exits with code 2, none is left waiting in a collective.

With one process every method here is the identity, and nothing changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

import clue_fw.errors as errors
from clue_fw.components import LossOutput, view_pair
from clue_fw.data.examples import Batch, Batches, ExampleSet, Shard
from clue_fw.errors import ClueError, RecipeError

T = TypeVar("T")

TIMEOUT_ENV = "CLUE_DIST_TIMEOUT"
"""Seconds a process waits in a collective for the others (default: torch's)."""

BUCKET_BYTES = 25 << 20
"""Gradients are averaged in buckets of about this many bytes (as DDP's default)."""


# --------------------------------------------------------------------- the launch


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
    one process is a plain run.
    """
    env = os.environ if environ is None else environ
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        local = _env_int(env, "LOCAL_RANK", default=rank)
        return Launch(rank, world, local) if world > 1 else None
    if "WORLD_SIZE" not in env:
        return None
    world = _env_int(env, "WORLD_SIZE")
    if world < 1:
        raise ClueError(
            f"WORLD_SIZE={env['WORLD_SIZE']!r}: the number of processes must be at least 1. "
            "Start data-parallel runs with torchrun, which sets it, or unset WORLD_SIZE."
        )
    if world == 1:
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
        yield Distributed(launch.rank, launch.world_size, comm)
        ok = True
    finally:
        # A failed process may have left the others in another collective (a crash on one
        # rank mid-step): a barrier here would wait with them until the group's timeout.
        # It leaves the group to the process exit instead (clue_fw.cli.main: at once, after
        # telling the others through the group's store, announce_failure).
        if created and ok:
            _leave_together()


FAILURE_KEY = "clue_fw/failed"
"""Key of the process group's store under which the first process that fails leaves
``{"rank": R, "code": C}``: the others then stop quietly with the same exit status."""
STORE_TIMEOUT_S = 3


def _group_store() -> Any:
    """The default process group's key-value store (short timeouts), or None."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(timedelta(seconds=STORE_TIMEOUT_S))
    except Exception:  # no store, or one that cannot be reached any more
        return None
    return store


def announce_failure(rank: int, code: int) -> None:
    """Record in the group's store that process ``rank`` fails with exit status ``code``,
    unless another process did first (best effort: a lost store records nothing)."""
    store = _group_store()
    if store is None:
        return
    try:
        store.compare_set(FAILURE_KEY, "", json.dumps({"rank": rank, "code": code}))
    except Exception:
        pass


LEAVE_GRACE_S = 2.0
"""How long a failed process keeps the group's store up after leaving the group, so the
others (which notice when its connections close) can read who failed."""


def leave_after_failure() -> None:
    """Close this failed process's connections to the others, so a process waiting in a
    collective with it stops now, then keep the store (rank 0 may host it) up for
    :data:`LEAVE_GRACE_S` seconds while they read :data:`FAILURE_KEY`. Best effort,
    bounded in time: the process exits afterwards anyway."""
    import threading
    import time

    if not (dist.is_available() and dist.is_initialized()):
        return
    store = _group_store()  # held here: the group's teardown would drop (and stop) it
    closing = threading.Thread(target=_destroy_quietly, daemon=True)
    closing.start()
    closing.join(LEAVE_GRACE_S)
    time.sleep(LEAVE_GRACE_S)
    del store


def _destroy_quietly() -> None:
    try:
        dist.destroy_process_group()
    except Exception:
        pass


_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def lost_a_process(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another process left."""
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _LOST_PEER)


def store_reachable() -> bool:
    """Whether the group's store still takes connections (rank 0 hosts it, at
    ``MASTER_ADDR:MASTER_PORT``, unless torchrun's agent does: a refused connection means
    that process is gone). A plain socket: torch's store client would log a C++ warning
    with a stack on a dead store."""
    import socket

    address = os.environ.get("MASTER_ADDR", "")
    port = os.environ.get("MASTER_PORT", "")
    if not address or not port.isdigit():
        return _group_store() is not None
    try:
        with socket.create_connection((address, int(port)), timeout=STORE_TIMEOUT_S):
            return True
    except OSError:
        return False


def failure_elsewhere(rank: int) -> tuple[int, int] | None:
    """``(rank, code)`` of another process that failed first and said so (its error is
    its own to report), or None."""
    store = _group_store()
    if store is None:
        return None
    try:
        if not store.check([FAILURE_KEY]):
            return None
        found = json.loads(store.get(FAILURE_KEY).decode("utf-8"))
        other, code = int(found["rank"]), int(found["code"])
    except Exception:
        return None
    return (other, code) if other != rank else None


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


# --------------------------------------------------------------------- the processes


class Distributed:
    """The processes of a run and what they do together; one process: all identities.

    ``comm_device`` is where tensors meet (the GPU with NCCL, the CPU with gloo).
    """

    def __init__(self, rank: int, world_size: int, comm_device: torch.device) -> None:
        self.rank = rank
        self.world_size = world_size
        self.comm_device = comm_device
        self.sync_gradients = GradientSync(world_size) if world_size > 1 else None

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Shard | None:
        """This process's share of every global batch (None in a one-process run)."""
        return Shard(self.rank, self.world_size) if self.parallel else None

    # ------------------------------------------------------------ decisions of rank 0

    def on_main(self, action: Callable[[], T]) -> T:
        """Run ``action`` on rank 0 only and hand its JSON result to every process.

        When it raises, every process raises: the same :class:`ClueError` class with the
        same message (so all exit with code 2), or a RuntimeError naming rank 0's error.
        """
        if not self.parallel:
            return action()
        if not self.is_main:
            return self._outcome(self.broadcast_json(None), 0)  # type: ignore[no-any-return]
        try:
            value = action()
        except BaseException as exc:
            self._send_failure(exc, 0)
            raise
        self.broadcast_json({"ok": value})
        return value

    def together(self, action: Callable[[], T]) -> T:
        """Run ``action`` on every process; if it raises on any, every process raises
        (the error of the lowest failing rank), so none waits in a later collective."""
        if not self.parallel:
            return action()
        failure: BaseException | None = None
        value: Any = None
        try:
            value = action()
        except Exception as exc:
            failure = exc
        mark = torch.tensor(
            [self.rank if failure is not None else self.world_size], device=self.comm_device
        )
        dist.all_reduce(mark, op=dist.ReduceOp.MIN)
        first = int(mark.item())
        if first == self.world_size:
            return value  # type: ignore[no-any-return]
        if self.rank == first:
            assert failure is not None
            self._send_failure(failure, first)
            raise failure
        payload = self.broadcast_json(None, src=first)
        if failure is not None:
            raise failure
        return self._outcome(payload, first)  # type: ignore[no-any-return]

    def _send_failure(self, exc: BaseException, src: int) -> None:
        payload = {
            "error": type(exc).__name__,
            "clue": isinstance(exc, ClueError),
            "message": str(exc),
        }
        try:
            self.broadcast_json(payload, src=src)
        except Exception:  # the group is gone: the others learn it from torchrun
            pass

    @staticmethod
    def _outcome(payload: Any, src: int) -> Any:
        if isinstance(payload, dict) and "ok" in payload:
            return payload["ok"]
        name = str(payload.get("error", "Error")) if isinstance(payload, dict) else "Error"
        message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
        kind = getattr(errors, name, None)
        if isinstance(payload, dict) and payload.get("clue"):
            if not (isinstance(kind, type) and issubclass(kind, ClueError)):
                kind = ClueError
            copy = kind(message)
            copy.reported_by = src  # its own process prints it; this copy stays quiet
            raise copy
        failure = RuntimeError(
            f"rank {src} failed with {name}: {message} (see its output); this process stops "
            "with it."
        )
        failure.reported_by = src  # type: ignore[attr-defined]
        raise failure

    # ------------------------------------------------------------ broadcasts

    def broadcast_json(self, value: Any, src: int = 0) -> Any:
        """``value`` (JSON) of rank ``src`` on every process; no pickle is involved."""
        if not self.parallel:
            return value
        if self.rank == src:
            payload = json.dumps(value).encode("utf-8")
            size = torch.tensor([len(payload)], dtype=torch.int64, device=self.comm_device)
        else:
            size = torch.zeros(1, dtype=torch.int64, device=self.comm_device)
        dist.broadcast(size, src=src)
        if self.rank == src:
            data = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(self.comm_device)
        else:
            data = torch.empty(int(size.item()), dtype=torch.uint8, device=self.comm_device)
        dist.broadcast(data, src=src)
        if self.rank == src:
            return value
        return json.loads(data.cpu().numpy().tobytes().decode("utf-8"))

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every process rank 0's parameters and buffers of ``module``, in place."""
        if self.parallel:
            self._broadcast_tensors(list(module.state_dict().values()))

    def broadcast_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Give every process rank 0's optimiser state (Adam moments and steps)."""
        if not self.parallel:
            return
        from clue_fw.training.checkpoint import optimizer_tensors, restore_optimizer

        header = None
        tensors: dict[str, torch.Tensor] = {}
        if self.is_main:
            tensors, structure = optimizer_tensors(optimizer)
            shapes = {
                name: [list(t.shape), str(t.dtype).removeprefix("torch."), t.device.type]
                for name, t in tensors.items()
            }
            header = {"structure": structure, "tensors": shapes}
        header = self.broadcast_json(header)
        if not header["tensors"]:
            return
        if not self.is_main:
            tensors = {
                name: torch.empty(shape, dtype=getattr(torch, dtype))
                for name, (shape, dtype, _) in header["tensors"].items()
            }
        moved = {name: t.to(self.comm_device) for name, t in tensors.items()}
        self._broadcast_tensors(list(moved.values()))
        if not self.is_main:
            where = {name: spec[2] for name, spec in header["tensors"].items()}
            params = [p for group in optimizer.param_groups for p in group["params"]]
            device = params[0].device if params else torch.device("cpu")
            received = {
                name: t.to("cpu" if where[name] == "cpu" else device) for name, t in moved.items()
            }
            restore_optimizer(optimizer, received, header["structure"], "rank 0's optimiser")

    def _broadcast_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Broadcast ``tensors`` from rank 0 in place, one flat buffer per dtype."""
        groups: dict[torch.dtype, list[torch.Tensor]] = {}
        for tensor in tensors:
            groups.setdefault(tensor.dtype, []).append(tensor)
        for group in groups.values():
            flat = torch.cat([t.detach().reshape(-1).to(self.comm_device) for t in group])
            dist.broadcast(flat, src=0)
            if not self.is_main:
                for tensor, part in zip(group, _split_like(flat, group), strict=True):
                    with torch.no_grad():
                        tensor.copy_(part)

    # ------------------------------------------------------------ sums

    def sum_floats(self, values: list[float]) -> list[float]:
        """``values`` added element-wise across processes (float64)."""
        if not self.parallel:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(total)
        return [float(v) for v in total.tolist()]

    def _check_same(self, names: list[str], what: str) -> None:
        """Refuse (on every process) ``names`` that differ between processes: a collective
        over different layouts would add up the wrong numbers."""
        digest = hashlib.sha256("\n".join(names).encode()).digest()
        mine = torch.tensor([int.from_bytes(digest[:4], "little") >> 1], device=self.comm_device)
        low, high = mine.clone(), mine.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if int(low.item()) != int(high.item()):
            raise RuntimeError(
                f"The processes disagree on the {what} ({', '.join(names)} on rank "
                f"{self.rank}); a component reported different keys on different ranks."
            )

    # ------------------------------------------------------------ data

    def evaluate(
        self, head: nn.Module, encoder: nn.Module, examples: ExampleSet, batch_size: int, split: str
    ) -> dict[str, float]:
        """Exact metrics of ``examples`` (:func:`~clue_fw.training.loop.evaluate`), the
        same to the bit for any number of processes.

        Each process scores a contiguous run of whole batches of one process's pass
        (:meth:`_eval_batches`), so every user is scored in the very batch one process
        scores it in, and the per-batch sums of every process are added in one process's
        order (:meth:`gather_batch_sums`). With fewer batches than processes, every
        process scores them all."""
        from clue_fw.training.loop import evaluate

        found = self._eval_batches(examples, batch_size)
        if found is None:
            return evaluate(head, encoder, examples, batch_size, split=split)
        first, stop, total = found
        rows = slice(first * batch_size, min(stop * batch_size, len(examples)))
        part = ExampleSet({k: v[rows] for k, v in examples.tensors.items()}, examples.ragged)
        return evaluate(
            head,
            encoder,
            part,
            batch_size,
            split=split,
            reduce_batches=lambda sums: self.gather_batch_sums(sums, first, total),
        )

    def _eval_batches(self, examples: ExampleSet, batch_size: int) -> tuple[int, int, int] | None:
        """(first, stop, total): this process scores batches ``[first, stop)`` of the
        ``total`` batches of one process's pass; None when every process scores all of
        them (one process, or fewer batches than processes)."""
        total = examples.num_batches(batch_size)
        if not self.parallel or total < self.world_size:
            return None
        first, stop = Shard(self.rank, self.world_size).rows(total)
        return first, stop, total

    def gather_batch_sums(
        self, mine: list[dict[str, torch.Tensor]], first: int, total: int
    ) -> list[dict[str, torch.Tensor]]:
        """The metric sums of all ``total`` batches, in order, on every process, from each
        process's own batches (``mine``, batches ``first ..``).

        Each batch's values travel in float64 in their own row of a ``[total, values]``
        table that is zero elsewhere, so the all-reduce adds only zeros to them: they come
        back exact, in their dtypes and on their devices."""
        if not mine:
            raise RuntimeError(
                f"rank {self.rank} scored no evaluation batch; every process needs at least one."
            )
        names = sorted(mine[0])  # one layout on every process
        self._check_same(names, "metric sums")
        like = [mine[0][name] for name in names]
        table = torch.zeros(
            total, sum(t.numel() for t in like), dtype=torch.float64, device=self.comm_device
        )
        for offset, sums in enumerate(mine):
            row = [sums[name].detach().reshape(-1) for name in names]
            table[first + offset] = torch.cat(row).to(self.comm_device, torch.float64)
        dist.all_reduce(table)
        batches = []
        for row in table:
            parts = zip(names, like, _split_like(row, like), strict=True)
            found = {name: part.to(value.device, value.dtype) for name, value, part in parts}
            batches.append({name: found[name] for name in mine[0]})  # the head's order
        return batches

    def seed_label(self) -> tuple[str, ...]:
        """Extra labels for the per-epoch global seed: each process draws its own
        dropout masks (one process: none, so its seeds are unchanged)."""
        return ("rank", str(self.rank)) if self.parallel else ()


def _split_like(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    parts = torch.split(flat, [t.numel() for t in like])
    return [p.reshape(t.shape) for p, t in zip(parts, like, strict=True)]


SINGLE = Distributed(0, 1, torch.device("cpu"))
"""A one-process run."""


# --------------------------------------------------------------------- training steps


class GradientSync:
    """Average the gradients of ``parameters`` across processes, in place.

    Gradients are packed into flat buckets of about :data:`BUCKET_BYTES` per dtype, each
    all-reduced asynchronously, then divided by the number of processes. A parameter
    without a gradient on some process counts as zero there; one without a gradient on
    every process keeps none (so the optimiser skips it, as in one process).
    """

    def __init__(self, world_size: int, bucket_bytes: int = BUCKET_BYTES) -> None:
        self.world_size = world_size
        self.bucket_bytes = bucket_bytes
        # The had-a-gradient flags, as device tensors, by pattern: made from a Python
        # list, a CUDA tensor is a copy that waits for the device (a host sync every
        # step); the pattern rarely changes, so each is made once.
        self._flags: dict[tuple[tuple[bool, ...], torch.dtype, torch.device], torch.Tensor] = {}

    def __call__(self, parameters: list[nn.Parameter]) -> None:
        if not parameters:
            return
        had = [p.grad is not None for p in parameters]
        grads: list[torch.Tensor] = []
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if p.grad.is_sparse:
                raise RuntimeError(
                    "Sparse gradients cannot be averaged across processes; build the "
                    "embedding without sparse=True for data-parallel training."
                )
            grads.append(p.grad)
        buckets = self._buckets(grads)
        # Whether each parameter had a gradient rides along in the first bucket.
        flags = self._flags_tensor(had, grads[buckets[0][0]].dtype, grads[0].device)
        flats, works = [], []
        for number, members in enumerate(buckets):
            parts = [grads[i].reshape(-1) for i in members] + ([flags] if number == 0 else [])
            flat = torch.cat(parts)
            flats.append(flat)
            works.append(dist.all_reduce(flat, async_op=True))
        for work, flat, members in zip(works, flats, buckets, strict=True):
            assert work is not None
            work.wait()
            flat.div_(self.world_size)
            mine = [grads[i] for i in members]
            used = sum(g.numel() for g in mine)
            for grad, part in zip(mine, _split_like(flat[:used], mine), strict=True):
                grad.copy_(part)
        if not all(had):
            present = flats[0][-len(parameters) :].tolist()
            for p, seen in zip(parameters, present, strict=True):
                if seen == 0:
                    p.grad = None

    def _flags_tensor(
        self, had: list[bool], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        key = (tuple(had), dtype, device)
        if key not in self._flags:
            self._flags[key] = torch.tensor(had, dtype=dtype, device=device)
        return self._flags[key]

    def _buckets(self, grads: list[torch.Tensor]) -> list[list[int]]:
        """Indices of ``grads`` in buckets of one dtype and device, about
        ``bucket_bytes`` each."""
        buckets: list[list[int]] = []
        size = 0
        for index, grad in enumerate(grads):
            nbytes = grad.numel() * grad.element_size()
            last = grads[buckets[-1][0]] if buckets else None
            if (
                last is None
                or last.dtype != grad.dtype
                or last.device != grad.device
                or size + nbytes > self.bucket_bytes
            ):
                buckets.append([])
                size = 0
            buckets[-1].append(index)
            size += nbytes
        return buckets


class ShardedStep:
    """A training step on this process's part of each global batch of ``batches``.

    The loss of a process is its rows' mean; scaled by ``rows * world_size /
    global rows`` (1 when the batch splits evenly) before the backward pass, the
    gradients that :class:`GradientSync` averages are those of the global batch's mean.
    The step also adds up the unscaled loss and terms per row, for :meth:`epoch_means`.
    """

    def __init__(
        self,
        step: Callable[[Batch], LossOutput],
        batches: Batches,
        distributed: Distributed,
    ) -> None:
        self.step = step
        self.batches = batches
        self.distributed = distributed
        self.loss_sum: torch.Tensor | None = None
        self.term_sums: dict[str, torch.Tensor] = {}
        self.rows = 0

    def __call__(self, batch: Batch) -> LossOutput:
        from clue_fw.training.loop import loss_output_problem

        output = self.step(batch)
        whole = self.batches.current
        if whole is None or loss_output_problem(output) is not None:
            return output  # the training loop names the broken contract
        rows = next(iter(batch.values())).shape[0]
        loss = output.loss.detach().double() * rows
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        for name, value in output.terms.items():
            term = torch.as_tensor(value, device=loss.device).detach().double().reshape(()) * rows
            self.term_sums[name] = term + self.term_sums.get(name, 0.0)
        self.rows += rows
        share = rows * self.distributed.world_size / whole.size
        if share == 1.0:
            return output
        return LossOutput(output.loss * share, output.terms)

    def epoch_means(self) -> tuple[float, dict[str, float], int]:
        """(mean loss, mean terms, rows) over every process's rows of the epoch."""
        names = sorted(self.term_sums)
        local = [
            float(self.loss_sum) if self.loss_sum is not None else 0.0,
            float(self.rows),
            *(float(self.term_sums[n]) for n in names),
        ]
        total = self.distributed.sum_floats(local)
        rows = max(total[1], 1.0)
        terms = {name: value / rows for name, value in zip(names, total[2:], strict=True)}
        return total[0] / rows, terms, int(total[1])


class GlobalView:
    """A view applied to the whole global batch, of which this process keeps its rows.

    Every process draws the randomness of every row of the global batch from the same
    generator, so each row is augmented as it is in a one-process run (and two processes
    never augment their rows with the same draws). Called on anything other than this
    process's rows (an objective that views something else), it is the view itself.
    ``name`` is the batch key of the viewed sequences, or a function of the batch that
    returns them (``finetune.auxiliary``: :meth:`HeadSpec.training_inputs`).
    """

    def __init__(
        self,
        view: Callable[..., torch.Tensor],
        batches: Batches,
        name: str | Callable[[Batch], torch.Tensor],
    ) -> None:
        self.view = view
        self.batches = batches
        self.name = name

    def __call__(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rows = self._global_rows(items)
        if rows is not None:
            everything, start, stop = rows
            return self.view(everything, generator)[start:stop]
        return self.view(items, generator)

    def pair(
        self, items: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both branches of a positive pair (:func:`~clue_fw.components.view_pair`), drawn
        on the global batch as in one process."""
        rows = self._global_rows(items)
        if rows is not None:
            everything, start, stop = rows
            first, second = view_pair(self.view, everything, generator)
            return first[start:stop], second[start:stop]
        return view_pair(self.view, items, generator)

    def _global_rows(self, items: torch.Tensor) -> tuple[torch.Tensor, int, int] | None:
        """The global batch's viewed sequences and this process's rows of them, when
        ``items`` are those rows; else None."""
        whole = self.batches.current
        if whole is None:
            return None
        start, stop = whole.rows
        name = self.name
        everything = name(whole.tensors) if callable(name) else whole.tensors[name]
        if _same_rows(everything[start:stop], items):
            return everything, start, stop
        return None


def _same_rows(mine: torch.Tensor, items: torch.Tensor) -> bool:
    """Whether ``items`` are this process's rows of the global batch. The batch a process
    trains on is a slice of the global batch, so the same memory is the usual answer and
    costs nothing; only other tensors are compared by value, which on a GPU waits for
    the device (a host synchronisation every step, measured as part of a 3x slower
    pre-training step under two processes, docs/results/ddp.md)."""
    if mine.shape != items.shape or mine.device != items.device or mine.dtype != items.dtype:
        return False
    if mine.data_ptr() == items.data_ptr() and mine.stride() == items.stride():
        return True
    return bool(torch.equal(mine, items))


# --------------------------------------------------------------------- BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """A differentiable all-reduce sum: the gradient of every process's input is the sum
    of the gradients of every process's output (each output is the same sum)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, group=ctx.group)
        return total, None


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over the global batch: statistics summed across the processes.

    In training, each process adds up its rows' sums and sums of squares in float64,
    all-reduced once through the differentiable all-reduce (:class:`_AllReduceSum`), so
    the forward pass and the gradients are those of BatchNorm1d on the concatenated
    batch (to float rounding). Running
    statistics are updated as BatchNorm1d updates them (unbiased variance, ``momentum``
    or the cumulative average); evaluation uses them, with no communication. Works on
    CPU tensors (gloo), which :class:`torch.nn.SyncBatchNorm` refuses, and on CUDA.

    The state dict is BatchNorm1d's (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``): checkpoints load either way. The global
    batch must have at least two rows (data-parallel batches always do).

    >>> norm = GlobalBatchNorm1d(8)  # doctest: +SKIP
    >>> out = norm(torch.randn(32, 8))  # in a process group: normalised over all ranks
    """

    def __init__(self, *args: Any, group: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        batch_stats = self.training or self.running_mean is None
        if not batch_stats or not (dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        dtype = torch.promote_types(input.dtype, torch.float32)
        x = input.to(dtype)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        # One all-reduce of [sum, sum of squares, rows] in float64 (forward and backward):
        # each all-reduce is a round trip between the GPUs, and a CLUE step has 8 of
        # these layers; float64 keeps the one-pass variance as exact as two passes.
        wide = x.to(torch.float64)
        rows = wide.new_full((1,), x.numel() // max(x.shape[1], 1))
        local = torch.cat([wide.sum(dims), (wide * wide).sum(dims), rows])
        total = _AllReduceSum.apply(local, self.group)
        channels = x.shape[1]
        count = total[-1]
        mean_wide = total[:channels] / count
        var_wide = (total[channels : 2 * channels] / count - mean_wide * mean_wide).clamp(min=0)
        mean, var = mean_wide.to(dtype), var_wide.to(dtype)
        centered = x - mean.reshape(shape)
        out = centered * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.training and self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), count.detach())
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average, as BatchNorm1d
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.copy_(mean * factor + self.running_mean * (1 - factor))
        self.running_var.copy_(unbiased * factor + self.running_var * (1 - factor))


def convert_batchnorm(module: nn.Module, group: Any = None) -> nn.Module:
    """Replace every BatchNorm1d in ``module`` by a :class:`GlobalBatchNorm1d` that shares
    its parameters and buffers (same objects: an optimiser built before still trains
    them, and the state dict keys do not change). Returns ``module``, or its replacement
    when ``module`` is itself a BatchNorm1d."""
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, GlobalBatchNorm1d):
        return _global_copy(module, group)
    for name, child in module.named_children():
        converted = convert_batchnorm(child, group)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _global_copy(norm: nn.BatchNorm1d, group: Any) -> GlobalBatchNorm1d:
    new = GlobalBatchNorm1d(
        norm.num_features,
        eps=norm.eps,
        momentum=norm.momentum,
        affine=norm.affine,
        track_running_stats=norm.track_running_stats,
        group=group,
    )
    # the very same tensors, not copies
    for name in ("weight", "bias"):
        if getattr(norm, name, None) is not None:
            setattr(new, name, getattr(norm, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        new._buffers[name] = norm._buffers.get(name)
    new.train(norm.training)
    return new


__all__ = [
    "GlobalBatchNorm1d",
    "Distributed",
    "GlobalView",
    "GradientSync",
    "Launch",
    "SINGLE",
    "ShardedStep",
    "check_batch_sizes",
    "convert_batchnorm",
    "launch_from_environment",
    "rank_device",
    "session",
]
