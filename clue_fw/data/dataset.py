"""Turn raw sequences into contiguous-id tensors and leave-one-out splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clue_fw.data.csr import Csr
from clue_fw.data.readers import RawSequences
from clue_fw.errors import DataError

MIN_LEAVE_ONE_OUT_LENGTH = 3


@dataclass(frozen=True)
class SequenceData:
    """Users' chronological sequences with contiguous item ids.

    Item ids run ``1..num_items`` (0 is padding). ``item_ids[i - 1]`` is the original
    id of item ``i``; ``user_ids[u]`` the original id of row ``u``.
    """

    sequences: Csr
    num_items: int
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def num_users(self) -> int:
        return self.sequences.num_rows

    @property
    def num_interactions(self) -> int:
        return int(self.sequences.values.numel())

    def summary(self) -> str:
        return (
            f"{self.num_users:,} users, {self.num_items:,} items, "
            f"{self.num_interactions:,} interactions "
            f"(mean length {self.num_interactions / max(self.num_users, 1):.1f})"
        )


def _k_core(user_of: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask of interactions kept by iterative k-core filtering.

    ``items`` are dense indices (``0..I-1``); ``user_of`` row indices, non-decreasing.
    """
    keep = np.ones(items.shape[0], dtype=bool)
    while True:
        changed = False
        if min_item > 1:
            counts = np.bincount(items[keep], minlength=int(items.max()) + 1)
            drop = keep & (counts[items] < min_item)
            if drop.any():
                keep &= ~drop
                changed = True
        if min_user > 1:
            counts = np.bincount(user_of[keep], minlength=int(user_of.max()) + 1)
            drop = keep & (counts[user_of] < min_user)
            if drop.any():
                keep &= ~drop
                changed = True
        if not changed:
            return keep


def _dense_items(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids, dense)``: the distinct original ids, sorted, and each item's index in
    them. A lookup table when ids are small (a few times the number of interactions,
    linear time), a sort otherwise (ids may be as large as 2**63 - 1)."""
    top = int(items.max())
    if top <= 2 * items.size + (1 << 20):
        present = np.zeros(top + 1, dtype=bool)
        present[items] = True
        item_ids = np.flatnonzero(present).astype(np.int64, copy=False)
        index = np.cumsum(present, dtype=np.int64)
        index -= 1
        return item_ids, index[items]
    item_ids, dense = np.unique(items, return_inverse=True)
    return item_ids, dense.reshape(-1)


def build_sequence_data(
    raw: RawSequences,
    min_user_interactions: int = MIN_LEAVE_ONE_OUT_LENGTH,
    min_item_interactions: int = 1,
    source: str = "data",
) -> SequenceData:
    """Filter (k-core), re-index items contiguously (by original id) and pack as CSR.

    Users with fewer than ``max(min_user_interactions, 3)`` interactions are dropped:
    leave-one-out needs at least one training item plus a validation and a test item.
    Vectorised over the packed arrays of ``raw`` (one sort of the items), so 50 million
    interactions take seconds.
    """
    min_user = max(min_user_interactions, MIN_LEAVE_ONE_OUT_LENGTH)
    items = raw.items
    if items.size == 0:
        raise DataError(f"{source} holds no interactions.")
    if items.min() < 0:
        raise DataError(f"{source} holds a negative item id ({items.min()}); ids must be >= 0.")
    item_ids, dense = _dense_items(items)
    row_type = np.int32 if raw.num_users < 2**31 else np.int64
    user_of = np.repeat(np.arange(raw.num_users, dtype=row_type), np.diff(raw.offsets))
    keep = _k_core(user_of, dense, min_user, min_item_interactions)
    if not keep.all():
        dense, user_of = dense[keep], user_of[keep]
        if dense.size == 0:
            lower = []
            if min_user > MIN_LEAVE_ONE_OUT_LENGTH:
                lower.append(f"`data.min_user_interactions` (down to {MIN_LEAVE_ONE_OUT_LENGTH})")
            if min_item_interactions > 1:
                lower.append("`data.min_item_interactions` (down to 1)")
            advice = (
                f"Lower {' or '.join(lower)}."
                if lower
                else f"Both thresholds are at their floor: leave-one-out needs "
                f"{MIN_LEAVE_ONE_OUT_LENGTH} interactions per user (one to train on, a "
                "validation and a test item), so this data has too few; use longer sequences."
            )
            raise DataError(
                f"No interactions of {source} survive filtering (users need >= {min_user} "
                f"interactions, items >= {min_item_interactions}). {advice}"
            )
        present = np.bincount(dense, minlength=item_ids.size) > 0
        if not present.all():  # renumber the surviving items, still by original id
            new_index = np.cumsum(present) - 1
            item_ids, dense = item_ids[present], new_index[dense]
    del keep
    user_lengths = np.bincount(user_of, minlength=raw.num_users)
    kept_users = np.flatnonzero(user_lengths)
    offsets = np.zeros(kept_users.size + 1, dtype=np.int64)
    np.cumsum(user_lengths[kept_users], out=offsets[1:])
    values = dense if dense.dtype == np.int64 else dense.astype(np.int64)
    values += 1  # dense is this function's own array: shift it in place
    sequences = Csr(torch.from_numpy(offsets), torch.from_numpy(values))
    return SequenceData(
        sequences=sequences,
        num_items=int(item_ids.size),
        user_ids=np.array(raw.user_ids[kept_users], dtype=np.int64),
        item_ids=item_ids,
    )


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Leave-one-out: the last item is the test target, the one before it validation.

    ``train``: everything before the validation item. ``train_valid``: everything
    before the test item (the input for test predictions).
    """

    train: Csr
    train_valid: Csr
    valid_target: torch.Tensor  # [U]
    test_target: torch.Tensor  # [U]


def leave_one_out(data: SequenceData) -> LeaveOneOutSplit:
    sequences = data.sequences
    if bool((sequences.lengths < MIN_LEAVE_ONE_OUT_LENGTH).any()):
        raise DataError("leave-one-out needs at least 3 interactions per user")
    return LeaveOneOutSplit(
        train=sequences.drop_last(2),
        train_valid=sequences.drop_last(1),
        valid_target=sequences.last(1),
        test_target=sequences.last(0),
    )
