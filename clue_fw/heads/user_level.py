"""What the user-level heads (``profile``, ``cold_start``) share.

Both read one vector per user (the [UR] output or the mean of the item states),
split *users* at random 80/5/15 with a seed of their own (so that the run seed
changes training, never the split), and may pre-train on every user's whole
source sequence: their labels and target items are not in it.

``label_fraction`` keeps the labels of only the first ``ceil(fraction * n_train)``
training users, in the split's own (seeded) order, for label-efficiency studies: the
subsets are nested (1% of the users is inside 5%, ...), and validation and test users
are the same for every fraction.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from clue_fw.errors import DataError
from clue_fw.heads.specs import UserLevelHeadSpec as UserLevelHeadSpec

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


def labelled_count(train_users: int, fraction: float) -> int:
    """How many of ``train_users`` training users keep their labels: ``ceil(fraction * n)``.

    The product is taken exactly on the fraction as written (``0.1 * 4830`` is 483, not
    484 as float arithmetic would round it up), and 1.0 keeps every user.

    >>> labelled_count(4832, 0.01), labelled_count(4830, 0.1), labelled_count(4832, 1.0)
    (49, 483, 4832)
    """
    if fraction >= 1:
        return train_users
    count = math.ceil(Fraction(repr(float(fraction))) * train_users)
    if count < 1:
        raise DataError(
            f"finetune.head.label_fraction: {fraction} of {train_users} training users "
            "leaves no labelled training user; the task has too few users to train on."
        )
    return count


def labelled_train(train: torch.Tensor, fraction: float) -> torch.Tensor:
    """The labelled part of a training split: its first :func:`labelled_count` entries.

    The training part of :func:`split_users` is already in a random order drawn from the
    split seed alone, so its prefixes are nested random subsets (1% inside 5% inside
    ... inside 100%), the same for every run seed. ``fraction`` 1.0 returns ``train``
    itself.
    """
    if fraction >= 1:
        return train
    return train[: labelled_count(train.numel(), fraction)]
