"""What a sequence file holds: users, items, interactions, lengths and repeats.

``clue data stats FILE`` prints :func:`sequence_stats` of a ``user item item ...`` file,
read by the same fast reader ``clue run`` uses (:func:`~clue_fw.data.readers.read_sequence_file`).
Everything is computed on the packed numpy arrays, without a loop over users.

>>> stats = sequence_stats_of(RawSequences([1, 2], [[10, 11, 10], [11, 12]]))
>>> stats.users, stats.items, stats.interactions, stats.repeats
(2, 3, 5, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clue_fw.data.readers import RawSequences, read_sequence_file

PERCENTILES = (50, 90, 99)
"""The length percentiles reported between the minimum and the maximum."""


@dataclass(frozen=True)
class SequenceStats:
    """Sizes of a set of sequences. ``lengths``: min, p50, p90, p99, max of the items per
    user; ``repeats``: interactions whose item the same user had earlier in the sequence."""

    users: int
    items: int
    interactions: int
    lengths: dict[str, float]
    repeats: int

    @property
    def repeat_rate(self) -> float:
        """The share of interactions that repeat an item of the user's earlier history."""
        return self.repeats / self.interactions if self.interactions else 0.0

    def lines(self) -> list[str]:
        """Human-readable ``name: value`` lines, as ``clue data stats`` prints them."""
        lengths = ", ".join(f"{name} {_number(value)}" for name, value in self.lengths.items())
        return [
            f"users: {self.users:,}",
            f"items: {self.items:,}",
            f"interactions: {self.interactions:,}",
            f"length: {lengths}",
            f"repeat rate: {self.repeat_rate:.4f} ({self.repeats:,} interactions repeat an "
            "item the user had before)",
        ]


def sequence_stats(path: str | Path) -> SequenceStats:
    """:func:`sequence_stats_of` the sequence file at ``path`` (a DataError if unreadable)."""
    return sequence_stats_of(read_sequence_file(path))


def sequence_stats_of(raw: RawSequences) -> SequenceStats:
    """The :class:`SequenceStats` of sequences already read."""
    items = raw.items
    lengths = np.diff(raw.offsets)
    if lengths.size:
        cut = np.percentile(lengths, PERCENTILES)
        summary = {"min": float(lengths.min())}
        summary |= {f"p{p}": float(v) for p, v in zip(PERCENTILES, cut, strict=True)}
        summary["max"] = float(lengths.max())
    else:
        summary = {name: 0.0 for name in ("min", *(f"p{p}" for p in PERCENTILES), "max")}
    return SequenceStats(
        users=int(raw.num_users),
        items=int(np.unique(items).size),
        interactions=int(items.size),
        lengths=summary,
        repeats=_repeats(lengths, items),
    )


def _repeats(lengths: np.ndarray, items: np.ndarray) -> int:
    """Interactions minus distinct (user, item) pairs: every occurrence of a pair after its
    first repeats an item the user had before."""
    if items.size == 0:
        return 0
    rows = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    order = np.lexsort((items, rows))
    same = (rows[order][1:] == rows[order][:-1]) & (items[order][1:] == items[order][:-1])
    return int(same.sum())


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
