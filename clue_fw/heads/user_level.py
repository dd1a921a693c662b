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
from typing import Any

import torch
from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from clue_fw.components import HeadSpec, TaskData, UserVector
from clue_fw.data.csr import Csr
from clue_fw.data.seeds import GeneratorSeed
from clue_fw.errors import DataError

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
    label_fraction: float = Field(
        1.0,
        description="Share of the training users whose labels fine-tuning uses, in (0, 1]: "
        "the first ceil(fraction x n_train) of the split's seeded order, so smaller "
        "fractions are subsets of larger ones; validation and test users do not change.",
    )

    @field_validator("label_fraction")
    @classmethod
    def _fraction_in_range(cls, value: float) -> float:
        if not 0 < value <= 1:  # also refuses NaN
            raise ValueError(
                f"label_fraction must be in (0, 1] (the share of the training users that "
                f"keep their labels; 1 keeps all), got {value}"
            )
        return value

    @model_serializer(mode="wrap")
    def _omit_full_fraction(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave the default ``label_fraction: 1.0`` out of dumps, so a recipe that does not
        set it keeps its recipe.yaml, recipe sha256 and run identity from before the field
        existed (and such runs still resume)."""
        data: dict[str, Any] = handler(self)
        if self.label_fraction == 1.0:
            data.pop("label_fraction", None)
        return data

    def labelled_train(self, train: torch.Tensor) -> torch.Tensor:
        """The training users (or rows) whose labels this head trains on."""
        return labelled_train(train, self.label_fraction)

    def pretrain_sequences(self, task_data: TaskData) -> Csr:
        """Every user's whole (source) sequence: the task's labels are not in it."""
        return task_data.sequences.sequences

    def position_states_use(self, where: str) -> str | None:
        if self.user_vector == "mean":
            return (
                f"{where}.user_vector: mean averages the per-position states; set "
                f"{where}.user_vector: ur to read the backbone's user vector"
            )
        return None

    def history_problem(self, history: str) -> str | None:
        if history != "recent":
            return (
                f"head {self.kind!r} predicts from each user's n most recent items; use "
                "history: recent"
            )
        return None

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The user's (source) sequence that the user vector is read from."""
        return batch["items"]
