"""Example sets: named tensors sharing their first dimension, batched on any device."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from clue_fw.data.csr import Csr

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Shard:
    """One process's share of data-parallel work: process ``rank`` of ``world_size``.

    A global batch of ``size`` rows is split into ``world_size`` contiguous parts whose
    sizes differ by at most one (the first ``size % world_size`` parts get the extra
    row, as :func:`torch.tensor_split`); this process takes part ``rank``.

    >>> Shard(1, 2).rows(64), Shard(1, 2).rows(7)
    ((32, 64), (4, 7))
    """

    rank: int
    world_size: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")

    def rows(self, size: int) -> tuple[int, int]:
        """The rows ``[start, stop)`` of a global batch of ``size`` rows that are ours."""
        base, extra = divmod(size, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + int(self.rank < extra)


@dataclass(frozen=True)
class GlobalBatch:
    """The global batch that a sharded batch is this process's part of.

    ``tensors`` holds every row of the global batch (each process can build it: all of
    them hold the examples and draw the same order), ``rows`` the part that is ours.
    """

    tensors: Batch
    rows: tuple[int, int]

    @property
    def size(self) -> int:
        return next(iter(self.tensors.values())).shape[0]


@dataclass(frozen=True)
class ExampleSet:
    """Examples as tensors, plus optional ragged per-example fields.

    ``tensors`` all share their first dimension (the examples). ``ragged`` maps a
    name to ``(row_field, csr)``: each batch then carries ``<name>_row`` (position in
    the batch) and ``<name>_value`` for every value of ``csr`` row ``batch[row_field]``.
    """

    tensors: dict[str, torch.Tensor]
    ragged: dict[str, tuple[str, Csr]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {name: t.shape[0] for name, t in self.tensors.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"example tensors disagree on the number of examples: {sizes}")

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0] if self.tensors else 0

    def to(self, device: torch.device | str) -> ExampleSet:
        return ExampleSet(
            {k: v.to(device) for k, v in self.tensors.items()},
            {k: (row, csr.to(device)) for k, (row, csr) in self.ragged.items()},
        )

    def num_batches(self, batch_size: int, min_size: int = 1, shard: Shard | None = None) -> int:
        min_size = _smallest(min_size, shard)
        full, rest = divmod(len(self), batch_size)
        return full + int(rest >= min_size and rest > 0)

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        min_size: int = 1,
        shard: Shard | None = None,
    ) -> Batches:
        """The batches of one pass, shuffled by ``generator`` when one is given.

        A last batch smaller than ``min_size`` is skipped (BatchNorm needs 2 rows).
        The result is an iterator that also tells how it was cut (:class:`Batches`).

        With a ``shard`` (data-parallel training), ``batch_size`` is the *global* batch
        size: every process draws the same order from its generator, cuts the same
        global batches and yields only its part of each (:meth:`Shard.rows`), so
        ``world_size`` processes together follow the batches of one. A last global
        batch with fewer rows than processes is skipped too (every process needs a row).
        """
        min_size = _smallest(min_size, shard)
        return Batches(
            self, batch_size, min_size, self._batches(batch_size, generator, min_size, shard)
        )

    def _batches(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        min_size: int,
        shard: Shard | None = None,
    ) -> Iterator[tuple[Batch, GlobalBatch | None]]:
        count = len(self)
        first = next(iter(self.tensors.values()))
        if generator is not None:
            order = torch.randperm(count, generator=generator, device=generator.device)
            order = order.to(first.device)
        else:
            order = None
        for start in range(0, count, batch_size):
            if count - start < min_size:
                break
            if order is None:
                batch = {k: v[start : start + batch_size] for k, v in self.tensors.items()}
            else:
                index = order[start : start + batch_size]
                batch = {k: v[index] for k, v in self.tensors.items()}
            whole = None
            if shard is not None:
                rows = shard.rows(next(iter(batch.values())).shape[0])
                whole = GlobalBatch(batch, rows)
                batch = {k: v[rows[0] : rows[1]] for k, v in batch.items()}
            for name, (row_field, csr) in self.ragged.items():
                batch[f"{name}_row"], batch[f"{name}_value"] = csr.batch_pairs(batch[row_field])
            yield batch, whole


def _smallest(min_size: int, shard: Shard | None) -> int:
    """The smallest global batch kept: every process of a ``shard`` needs a row."""
    return min_size if shard is None else max(min_size, shard.world_size)


class Batches(Iterator[Batch]):
    """One pass of :meth:`ExampleSet.batches`: an iterator of batches that knows how many
    examples it cuts, into what ``batch_size``, and the smallest batch it keeps.

    When the pass is sharded, :attr:`current` is the global batch that the batch last
    returned is this process's part of (None otherwise).
    """

    def __init__(
        self,
        examples: ExampleSet,
        batch_size: int,
        min_size: int,
        batches: Iterator[tuple[Batch, GlobalBatch | None]],
    ) -> None:
        self.examples = len(examples)
        self.batch_size = batch_size
        self.min_size = min_size
        self.count = examples.num_batches(batch_size, min_size)
        self.current: GlobalBatch | None = None
        self._batches = batches

    def __len__(self) -> int:
        return self.count

    def __next__(self) -> Batch:
        batch, self.current = next(self._batches)
        return batch


@dataclass(frozen=True)
class Task:
    """A downstream task's data: train, validation and test examples."""

    train: ExampleSet
    valid: ExampleSet
    test: ExampleSet

    def to(self, device: torch.device | str) -> Task:
        return Task(self.train.to(device), self.valid.to(device), self.test.to(device))

    def split(self, name: str) -> ExampleSet:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)
