"""The checks of :func:`~clue_fw.data.synth.write_synthetic_sequences`' arguments.

Each refuses a bad value with a :class:`~clue_fw.errors.DataError` that names the
argument and its ``clue data synth`` flag where it has one, and says what it takes.
"""

from __future__ import annotations

import math

from clue_fw.errors import DataError

MAX_ITEMS = 2**31 - 1
"""The largest catalogue (``--items``, ``--target-items``)."""
MAX_MEAN_LENGTH = 100_000
"""The largest ``--mean-length``."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DataError(message)


def check_arguments(
    num_users: int,
    num_items: int,
    mean_length: float,
    max_length: int | None,
    repeat_rate: float,
    seed: int,
    num_clusters: int | None,
) -> None:
    """Refuse sizes, lengths, rates and a seed that the generator cannot use."""
    _check(num_users >= 1, f"num_users (--users) must be at least 1, got {num_users}.")
    _check(
        3 <= num_items <= MAX_ITEMS,
        f"num_items (--items) must be between 3 and {MAX_ITEMS:,} (every user needs 3 "
        f"distinct items for leave-one-out), got {num_items}.",
    )
    _check(
        math.isfinite(mean_length) and 3 <= mean_length <= MAX_MEAN_LENGTH,
        f"mean_length (--mean-length) must be between 3 and {MAX_MEAN_LENGTH:,} (users "
        f"need at least 3 items for leave-one-out), got {mean_length}.",
    )
    if max_length is not None:
        _check(
            max_length >= mean_length,
            f"max_length ({max_length}) must be at least mean_length ({mean_length}).",
        )
    _check(
        math.isfinite(repeat_rate) and 0 <= repeat_rate < 1,
        f"repeat_rate (--repeat-rate) is the share of repeated items and must be in "
        f"[0, 1), got {repeat_rate}.",
    )
    _check(seed >= 0, f"seed (--seed) must be a non-negative integer, got {seed}.")
    if num_clusters is not None:
        _check(
            1 <= num_clusters <= num_items,
            f"num_clusters must be between 1 and num_items ({num_items}), got {num_clusters}.",
        )


def check_model_arguments(
    stay: float, explore: float, follow: float, clusters_per_user: int, popularity_exponent: float
) -> None:
    """Refuse parameters of the model (:mod:`clue_fw.data.synth`) out of their range."""
    for name, value in (("stay", stay), ("explore", explore), ("follow", follow)):
        _check(0 <= value <= 1, f"{name} is a probability and must be in [0, 1], got {value}.")
    _check(clusters_per_user >= 1, f"clusters_per_user must be >= 1, got {clusters_per_user}.")
    _check(
        popularity_exponent >= 0,
        f"popularity_exponent must be >= 0, got {popularity_exponent}.",
    )


def target_domain_size(
    target_items: int | None, cold_start: bool, num_items: int, clusters: int
) -> int:
    """The target domain's catalogue size (0: no target domain)."""
    if not cold_start:
        _check(
            target_items is None,
            "target_items (--target-items) sizes the cold-start target domain; add "
            "--cold-start (cold_start=True) or leave it out.",
        )
        return 0
    if target_items is None:
        return max(num_items // 10, 5 * clusters)
    _check(
        clusters <= target_items <= MAX_ITEMS,
        f"target_items (--target-items) must be between the number of genres ({clusters:,}: "
        f"every source genre has a target genre of at least one item) and {MAX_ITEMS:,}, "
        f"got {target_items}.",
    )
    return target_items
