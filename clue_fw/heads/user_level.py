"""What the user-level heads (``profile``, ``cold_start``) share.

Both read one vector per user (the [UR] output or the mean of the item states),
split *users* at random 80/5/15 with a seed of their own (so that the run seed
changes training, never the split), and may pre-train on every user's whole
source sequence: their labels and target items are not in it.
"""

from __future__ import annotations

import torch
from pydantic import Field

from clue_fw.components import HeadSpec, TaskData, UserVector
from clue_fw.data.csr import Csr
from clue_fw.data.seeds import GeneratorSeed

SPLIT_FRACTIONS = (0.8, 0.05, 0.15)


def split_users(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices ``0..count-1`` shuffled by ``seed`` and cut 80/5/15 (train, valid, test).

    Sizes are rounded down for valid and test; every part of a split with at least
    three users is non-empty.
    """
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    valid = max(int(count * SPLIT_FRACTIONS[1]), 1 if count >= 3 else 0)
    test = max(int(count * SPLIT_FRACTIONS[2]), 1 if count >= 3 else 0)
    train = count - valid - test
    return order[:train], order[train : train + valid], order[train + valid :]


def split_rows(rows: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The user ``rows`` cut into (train, valid, test) by :func:`split_users`."""
    train, valid, test = split_users(rows.numel(), seed)
    return rows[train], rows[valid], rows[test]


class UserLevelHeadSpec(HeadSpec):
    """Base of heads that predict from one vector per user."""

    user_vector: UserVector = Field(
        "ur",
        description="The user vector: 'ur', the [UR] token output; 'mean', the mean of the "
        "item states.",
    )
    split_seed: GeneratorSeed = Field(
        0,
        description="Seed of the random 80/5/15 user split (fixed across run seeds), "
        "in 0 .. 2**32 - 1.",
    )

    def pretrain_sequences(self, task_data: TaskData) -> Csr:
        """Every user's whole (source) sequence: the task's labels are not in it."""
        return task_data.sequences.sequences

    def history_problem(self, history: str) -> str | None:
        if history != "recent":
            return (
                f"head {self.kind!r} predicts from each user's n most recent items; use "
                "history: recent"
            )
        return None
