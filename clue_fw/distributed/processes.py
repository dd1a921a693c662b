"""The rank-0 protocol: what the processes of a run do together.

Only rank 0 touches the run directory; what it decides reaches the others by broadcast
(:meth:`Distributed.on_main`), and so does a refusal, so that every process raises the
same error. Evaluation adds the per-batch metric sums in one process's order."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

import clue_fw.errors as errors
from clue_fw.data.examples import ExampleSet, Shard
from clue_fw.distributed.gradients import GradientSync, _split_like
from clue_fw.errors import ClueError

T = TypeVar("T")


class Distributed:
    """The processes of a run and what they do together; one process: all identities.

    ``comm_device`` is where tensors meet (the GPU with NCCL, the CPU with gloo).
    ``parallel`` (default: more than one process) runs the data-parallel step; a group
    of one process that sets it (:data:`~clue_fw.distributed.launch.FORCE_ENV`) pays
    for the data-parallel machinery without sharing the work, to measure what it costs.
    """

    def __init__(
        self, rank: int, world_size: int, comm_device: torch.device, parallel: bool | None = None
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.comm_device = comm_device
        self._parallel = world_size > 1 if parallel is None else parallel
        self.sync_gradients = GradientSync(world_size) if self._parallel else None

    @property
    def parallel(self) -> bool:
        return self._parallel

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


SINGLE = Distributed(0, 1, torch.device("cpu"))
"""A one-process run."""
