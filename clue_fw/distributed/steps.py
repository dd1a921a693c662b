"""Training steps over global batches: each process trains on its shard of a global
batch (:class:`ShardedStep`), explicit views are drawn for the whole global batch
(:class:`GlobalView`), and :class:`GradientSync` averages the gradients in buckets."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from clue_fw.components import LossOutput, view_pair
from clue_fw.data.examples import Batch, Batches

if TYPE_CHECKING:
    from clue_fw.distributed.processes import Distributed


BUCKET_BYTES = 25 << 20
"""Gradients are averaged in buckets of about this many bytes (as DDP's default)."""


def _split_like(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    parts = torch.split(flat, [t.numel() for t in like])
    return [p.reshape(t.shape) for p, t in zip(parts, like, strict=True)]


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
