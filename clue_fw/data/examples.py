"""Example sets: named tensors sharing their first dimension, batched on any device."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from clue_fw.data.csr import Csr

Batch = dict[str, torch.Tensor]


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

    def num_batches(self, batch_size: int, min_size: int = 1) -> int:
        full, rest = divmod(len(self), batch_size)
        return full + int(rest >= min_size and rest > 0)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, min_size: int = 1
    ) -> Batches:
        """The batches of one pass, shuffled by ``generator`` when one is given.

        A last batch smaller than ``min_size`` is skipped (BatchNorm needs 2 rows).
        The result is an iterator that also tells how it was cut (:class:`Batches`).
        """
        return Batches(self, batch_size, min_size, self._batches(batch_size, generator, min_size))

    def _batches(
        self, batch_size: int, generator: torch.Generator | None, min_size: int
    ) -> Iterator[Batch]:
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
            for name, (row_field, csr) in self.ragged.items():
                batch[f"{name}_row"], batch[f"{name}_value"] = csr.batch_pairs(batch[row_field])
            yield batch


class Batches(Iterator[Batch]):
    """One pass of :meth:`ExampleSet.batches`: an iterator of batches that knows how many
    examples it cuts, into what ``batch_size``, and the smallest batch it keeps.
    """

    def __init__(
        self, examples: ExampleSet, batch_size: int, min_size: int, batches: Iterator[Batch]
    ) -> None:
        self.examples = len(examples)
        self.batch_size = batch_size
        self.min_size = min_size
        self.count = examples.num_batches(batch_size, min_size)
        self._batches = batches

    def __len__(self) -> int:
        return self.count

    def __next__(self) -> Batch:
        return next(self._batches)


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
