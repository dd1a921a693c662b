"""Training steps over global batches: each process trains on its shard of a global
batch (:class:`ShardedStep`), explicit views are drawn for the whole global batch
(:class:`GlobalView`), and :class:`~clue_fw.distributed.gradients.GradientSync` averages
the gradients in buckets. None of them waits for the device on the host in a step."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from clue_fw.components import LossOutput, view_pair
from clue_fw.data.examples import Batch, Batches

if TYPE_CHECKING:
    from clue_fw.distributed.processes import Distributed


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
        self.term_sums: dict[str, torch.Tensor | float] = {}
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
            term = _row_sum(value, rows, loss.device)
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


def _row_sum(value: object, rows: int, device: torch.device) -> torch.Tensor | float:
    """A logged term times ``rows``: on ``device`` when the term is a tensor there, on
    the host when it is a number or a CPU tensor (a number copied to a GPU would make
    the host wait for the device)."""
    if isinstance(value, torch.Tensor) and value.device == device:
        return value.detach().double().reshape(()) * rows
    return float(value) * rows  # type: ignore[arg-type]


class GlobalView:
    """A view applied to the whole global batch, of which this process keeps its rows.

    Every process draws the randomness of every row of the global batch from the same
    generator, so each row is augmented as it is in a one-process run (and two processes
    never augment their rows with the same draws).

    Which sequences are this process's rows is decided on the host, from shapes and
    memory alone: this process's slice of the global batch (the usual call) costs
    nothing. Sequences of the same shape, dtype and device in other memory (a copy, or
    sequences an objective made from its rows) take this process's place in the global
    batch, which is viewed as a whole: each of their rows gets the draws of its row of
    the global batch, as the rows of a one-process run do. Sequences of another shape
    (an objective that views something else) get the view itself. ``name`` is the
    batch key of the viewed sequences, or a function of the batch that returns them
    (``finetune.auxiliary``: :meth:`HeadSpec.training_inputs`).
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
        """The global batch's viewed sequences, with ``items`` as this process's rows,
        and where those rows are; None when ``items`` cannot be those rows (another
        shape, dtype or device: known on the host, no wait for the device)."""
        whole = self.batches.current
        if whole is None:
            return None
        start, stop = whole.rows
        name = self.name
        everything = name(whole.tensors) if callable(name) else whole.tensors[name]
        mine = everything[start:stop]
        if mine.shape != items.shape or mine.device != items.device or mine.dtype != items.dtype:
            return None
        if mine.data_ptr() != items.data_ptr() or mine.stride() != items.stride():
            # Other memory: the same rows copied, or other sequences of their shape. Put
            # them in this process's place; comparing values would wait for the device.
            everything = torch.cat([everything[:start], items, everything[stop:]])
        return everything, start, stop
