"""A run's item catalogue: raw item ids to the contiguous ids its embeddings index.

Runs re-index items contiguously (:func:`~clue_fw.data.dataset.build_sequence_data`):
internal id ``i`` (``1..num_items``; 0 is padding) is raw id ``raw_ids[i - 1]``.
:meth:`ItemCatalogue.encode` turns users' raw sequences into internal ids; an id that is
not in the catalogue (or is no integer id at all) is skipped and counted in an
:class:`InputReport`, never an exception.

>>> catalogue = ItemCatalogue(np.array([10, 20, 30]))
>>> encoded = catalogue.encode({"ann": [10, 99, 30], "bob": [99]})
>>> encoded.users, encoded.csr.values.tolist()
(['ann'], [1, 3])
>>> encoded.report.unknown_items, encoded.report.empty_users
(2, ('bob',))
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch

from clue_fw.data.csr import Csr
from clue_fw.errors import DataError, quote, short_repr

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
EXAMPLES = 5
"""How many distinct unknown ids (and left-out users) a report keeps as examples."""

Sequences = Mapping[Hashable, Iterable[Any]] | Iterable[Iterable[Any]]
"""Users' item sequences, oldest item first: a mapping user -> items, or a list of
sequences (whose users are then their positions 0, 1, 2...)."""


class UnknownItemsWarning(UserWarning):
    """Some item ids were not in the run's catalogue and were skipped."""


@dataclass(frozen=True)
class InputReport:
    """What :meth:`ItemCatalogue.encode` skipped.

    ``unknown_items``: item occurrences that are not in the catalogue (every one was
    skipped), ``unknown_distinct`` of them distinct; ``unknown_examples``: up to 5 of the
    distinct ones, in order of appearance;
    ``users_with_unknown``: sequences that held at least one; ``empty_users``: users left
    out because no item of theirs is in the catalogue (an empty sequence included).
    """

    sequences: int
    catalogue_size: int
    unknown_items: int = 0
    unknown_distinct: int = 0
    unknown_examples: tuple[Any, ...] = ()
    users_with_unknown: int = 0
    empty_users: tuple[Hashable, ...] = ()
    empty_count: int = 0

    @property
    def clean(self) -> bool:
        """Nothing was skipped and nobody was left out."""
        return self.unknown_items == 0 and self.empty_count == 0

    def summary(self) -> str:
        """One sentence for a warning or the CLI ("" when the input was clean)."""
        parts = []
        if self.unknown_items:
            examples = ", ".join(_show(v) for v in self.unknown_examples)
            more = ", ..." if self.unknown_distinct > len(self.unknown_examples) else ""
            parts.append(
                f"skipped {self.unknown_items:,} item id(s) ({self.unknown_distinct:,} "
                f"distinct: {examples}{more}) that are not in the run's catalogue of "
                f"{self.catalogue_size:,} items, in {self.users_with_unknown:,} of "
                f"{self.sequences:,} sequence(s)"
            )
        if self.empty_count:
            shown = ", ".join(_show(u) for u in self.empty_users)
            more = ", ..." if self.empty_count > len(self.empty_users) else ""
            parts.append(
                f"left out {self.empty_count:,} user(s) with no item of the catalogue "
                f"({'user' if self.empty_count == 1 else 'users'} {shown}{more}): they have no "
                "vector"
            )
        return "; ".join(parts) + ("." if parts else "")


@dataclass(frozen=True)
class EncodedSequences:
    """The users kept (in input order) and their sequences in internal ids."""

    users: list[Hashable]
    csr: Csr
    report: InputReport


class ItemCatalogue:
    """The raw item ids of a run, in internal-id order (``raw_ids[i - 1]`` is item ``i``)."""

    def __init__(self, raw_ids: np.ndarray) -> None:
        raw = np.asarray(raw_ids)
        if raw.ndim != 1 or raw.dtype.kind not in "iu" or raw.size == 0:
            raise DataError(
                f"an item catalogue is a non-empty 1-d array of integer ids, not "
                f"{raw.dtype} {raw.shape}."
            )
        self.raw_ids = raw.astype(np.int64)
        self._order = np.argsort(self.raw_ids, kind="stable")
        self._sorted = self.raw_ids[self._order]
        if np.any(self._sorted[1:] == self._sorted[:-1]):
            raise DataError("an item catalogue lists an item id twice; it is not a run's.")

    def __len__(self) -> int:
        return int(self.raw_ids.size)

    def to_internal(self, raw: np.ndarray) -> np.ndarray:
        """Internal ids of int64 ``raw`` ids; 0 where an id is not in the catalogue."""
        raw = np.asarray(raw, dtype=np.int64)
        position = np.searchsorted(self._sorted, raw).clip(max=len(self) - 1)
        found = self._sorted[position] == raw
        return np.where(found, self._order[position] + 1, 0).astype(np.int64)

    def to_raw(self, internal: torch.Tensor | np.ndarray) -> np.ndarray:
        """Raw ids of internal ids ``1..num_items`` (any shape)."""
        values = internal.cpu().numpy() if isinstance(internal, torch.Tensor) else internal
        return self.raw_ids[np.asarray(values, dtype=np.int64) - 1]

    def encode(self, sequences: Sequences) -> EncodedSequences:
        """Users' raw sequences in internal ids; unknown ids skipped and reported."""
        users, rows = _rows(sequences)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = list(chain.from_iterable(rows))
        raw, is_id = _as_int64(flat)
        return self._encode(users, lengths, raw, is_id, flat)

    def encode_packed(
        self, users: list[Hashable], offsets: np.ndarray, items: np.ndarray
    ) -> EncodedSequences:
        """:meth:`encode` of packed sequences: user ``users[r]`` has the int64 raw ids
        ``items[offsets[r]:offsets[r + 1]]`` (as :class:`~clue_fw.data.readers.RawSequences`
        holds them); no Python object per item is made."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        lengths = np.diff(np.asarray(offsets, dtype=np.int64))
        if lengths.size != len(users) or int(lengths.sum()) != items.size:
            raise ValueError("offsets must have len(users) + 1 entries ending at len(items)")
        return self._encode(users, lengths, items, np.ones(items.size, dtype=bool), None)

    def _encode(
        self,
        users: list[Hashable],
        lengths: np.ndarray,
        raw: np.ndarray,
        is_id: np.ndarray,
        flat: list[Any] | None,
    ) -> EncodedSequences:
        """The shared work of :meth:`encode` and :meth:`encode_packed`: ``raw`` ids (valid
        where ``is_id``), ``lengths`` per user; ``flat``, the values as given (examples)."""
        internal = np.zeros(raw.size, dtype=np.int64)
        internal[is_id] = self.to_internal(raw[is_id])
        known = internal > 0
        row_of = np.repeat(np.arange(len(users)), lengths)
        known_per_row = np.bincount(row_of[known], minlength=len(users))
        keep = known_per_row > 0
        unknown_positions = np.flatnonzero(~known)
        examples: dict[Any, Any] = {}  # distinct by id value (or repr), first seen first
        for position in unknown_positions:
            value = flat[position] if flat is not None else int(raw[position])
            examples.setdefault(int(raw[position]) if is_id[position] else repr(value), value)
            if len(examples) == EXAMPLES:
                break
        ids = is_id[unknown_positions]
        others = {repr(flat[p]) for p in unknown_positions[~ids]} if flat is not None else set()
        report = InputReport(
            sequences=len(users),
            catalogue_size=len(self),
            unknown_items=int(unknown_positions.size),
            unknown_distinct=int(np.unique(raw[unknown_positions[ids]]).size) + len(others),
            unknown_examples=tuple(examples.values()),
            users_with_unknown=int(np.count_nonzero(known_per_row < lengths)),
            empty_users=tuple(users[i] for i in np.flatnonzero(~keep)[:EXAMPLES]),
            empty_count=int(np.count_nonzero(~keep)),
        )
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(known_per_row[keep], out=offsets[1:])
        csr = Csr(torch.from_numpy(offsets), torch.from_numpy(internal[known]))
        return EncodedSequences([users[i] for i in np.flatnonzero(keep)], csr, report)


def _show(value: Any) -> str:
    """A user's id or item id for a message: quoted and cut when it is text."""
    return quote(value) if isinstance(value, str) else short_repr(value)


def _rows(sequences: Sequences) -> tuple[list[Hashable], list[list[Any]]]:
    """(users, sequences as lists) of a mapping user -> items or a list of sequences."""
    if isinstance(sequences, str | bytes) or not isinstance(sequences, Iterable):
        raise DataError(
            f"sequences must be a list of item sequences or a mapping user -> items, not "
            f"{type(sequences).__name__}: for one user pass [[10, 20, 30]]."
        )
    if isinstance(sequences, Mapping):
        users: list[Hashable] = list(sequences.keys())
        values: list[Any] = list(sequences.values())
    else:
        values = list(sequences)
        users = list(range(len(values)))
    rows = []
    for user, row in zip(users, values, strict=True):
        if isinstance(row, torch.Tensor | np.ndarray):
            row = row.tolist()
        if isinstance(row, str | bytes | Mapping) or not isinstance(row, Iterable):
            raise DataError(
                f"the sequence of user {_show(user)} is of type {type(row).__name__}, not a "
                "list of item ids: pass a list of sequences ([[10, 20, 30]]) or a mapping "
                "user -> items."
            )
        rows.append(list(row))
    return users, rows


def _as_int64(flat: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``flat`` as int64 plus a mask of the entries that are integer ids (bools, floats,
    strings and integers beyond int64 are not; their int64 value is 0)."""
    if all(type(v) is int for v in flat):
        try:
            return np.asarray(flat, dtype=np.int64), np.ones(len(flat), dtype=bool)
        except OverflowError:
            pass  # some id is beyond int64: sort them out one by one
    raw = np.zeros(len(flat), dtype=np.int64)
    is_id = np.zeros(len(flat), dtype=bool)
    for index, value in enumerate(flat):
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            if _INT64_MIN <= int(value) <= _INT64_MAX:
                raw[index], is_id[index] = int(value), True
    return raw, is_id
