"""What :class:`~clue_fw.inference.LoadedRun` returns: user vectors (whole or as a stream),
recommendations, item vectors, and the candidate set a ranking is restricted to. Plain
frozen dataclasses of CPU tensors, so they can be kept, compared and written anywhere.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clue_fw.errors import ClueError, quote
from clue_fw.inference.catalogue import InputReport, ItemCatalogue


@dataclass(frozen=True)
class UserVectors:
    """``vectors[i]`` (``[U, d]`` float32, on the CPU) is the vector of ``users[i]``.

    ``users`` are the keys of the input mapping (or positions in the input list), in
    input order, without the users :class:`InputReport` lists as left out.
    """

    users: list[Hashable]
    vectors: torch.Tensor
    report: InputReport


@dataclass(frozen=True)
class UserVectorStream:
    """:class:`UserVectors` one batch at a time: ``chunks`` yields ``[B, dim]`` float32
    CPU vectors of ``users``, in order, computed as it is iterated (once)."""

    users: list[Hashable]
    report: InputReport
    chunks: Iterator[torch.Tensor]
    dim: int

    def collect(self) -> UserVectors:
        """All the vectors at once (consumes the stream)."""
        parts = list(self.chunks)
        vectors = torch.cat(parts) if parts else torch.empty(0, self.dim)
        return UserVectors(self.users, vectors, self.report)


@dataclass(frozen=True)
class Recommendations:
    """Top-k raw item ids (``items``, ``[U, k]`` int64) and their scores (``[U, k]``
    float32) for ``users``, best first, on the CPU. A user with fewer than ``k`` rankable
    items (the rest excluded as seen) has ``-1`` items scoring ``-inf`` in the last slots."""

    users: list[Hashable]
    items: torch.Tensor
    scores: torch.Tensor
    report: InputReport
    exclude_seen: str
    #: How many items ranking was restricted to (``candidates=``), None when unrestricted;
    #: ``candidates_unknown``: the candidate ids the run does not know (skipped).
    candidates: int | None = None
    candidates_unknown: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Candidates:
    """The items a ranking may return: ``allowed`` (bool ``[items + 1]`` over internal ids,
    on the run's device), how many, and the raw ids asked for that the run does not know."""

    allowed: torch.Tensor
    count: int
    unknown: list[int]

    def to(self, device: torch.device | str) -> Candidates:
        """The same candidates with the mask on ``device``."""
        return Candidates(self.allowed.to(device), self.count, self.unknown)


@dataclass(frozen=True)
class ItemVectors:
    """``vectors[i]`` (``[I, d]`` float32) is the vector of raw item id ``item_ids[i]``."""

    item_ids: torch.Tensor
    vectors: torch.Tensor


def whole_number(value: Any, name: str, least: int) -> int:
    """``value`` as an ``int`` when it is a whole number (a Python or numpy integer, not a
    bool) of at least ``least``; a ClueError naming ``name`` and its type otherwise."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if int(value) >= least:
            return int(value)
    raise ClueError(
        f"{name} must be a whole number >= {least}, not {quote(value)} ({type(value).__name__})."
    )


def candidate_items(candidates: Iterable[int], catalogue: ItemCatalogue) -> Candidates:
    """The allowed items as a mask over internal ids ``0..items`` (0, padding, never), on
    the CPU; ids the catalogue does not know are listed, none known is an error."""
    raw = list(candidates)
    bad = [value for value in raw if not isinstance(value, numbers.Integral)]
    if bad or any(isinstance(value, (bool, np.bool_)) for value in raw):
        shown = bad[0] if bad else next(v for v in raw if isinstance(v, (bool, np.bool_)))
        raise ClueError(f"Candidate item ids must be whole numbers; got {shown!r}.")
    wanted = np.unique(np.asarray(raw, dtype=np.int64))
    internal = catalogue.to_internal(wanted)
    known = internal[internal > 0]
    if known.size == 0:
        raise ClueError(
            f"None of the {wanted.size:,} candidate item id(s) is in the run's catalogue "
            f"({len(catalogue):,} items), so there is nothing to rank. Are they ids of "
            "the same dataset as the run?"
        )
    allowed = torch.zeros(len(catalogue) + 1, dtype=torch.bool)
    allowed[torch.from_numpy(known)] = True
    return Candidates(allowed, int(known.size), wanted[internal == 0].tolist())
