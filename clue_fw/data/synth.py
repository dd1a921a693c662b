"""Realistic synthetic sequence files at any scale (``clue data synth``).

:func:`write_synthetic_sequences` writes a sequence file (``user item item ...`` per
line, oldest first, the format :func:`~clue_fw.data.readers.read_sequence_file` reads)
with the shape of real behaviour logs, streamed to disk in chunks of users, each chunk
generated with vectorised numpy (no Python loop over users or items). One million
users over one million items (about 50 million interactions) take a few minutes on 2
CPU cores with a few hundred MB of memory.

The model (a user's sequence, token by token):

* **Popularity**: item ``i`` has weight ``rank(i) ** -popularity_exponent`` (Zipf),
  ranks shuffled so ids say nothing about popularity.
* **Genres**: items are split at random into ``num_clusters`` clusters (default
  ``sqrt(num_items)``); each cluster's items form a random cycle (a "series").
* **Bursts**: each user prefers ``clusters_per_user`` clusters (drawn by cluster
  popularity). A sequence is a run of bursts: each token stays in the current cluster
  with probability ``stay``; otherwise a new burst starts, in one of the user's
  preferred clusters, or with probability ``explore`` in any cluster.
* **Series**: inside a burst, with probability ``follow`` the next item is the
  successor of the previous one in its cluster's cycle; otherwise (and at the start of
  each burst) an item of the cluster drawn by popularity. Next-item prediction is
  therefore learnable far above popularity: about ``stay * follow`` of the next items
  are the successor of the current one.
* **Lengths**: ``3 + floor(X)`` with ``X`` log-normal (sigma 1), mean ``mean_length``,
  at most ``max_length``: heavy-tailed like real logs, and at least 3 so that
  leave-one-out works. A user's items are distinct (like MovieLens) unless
  ``repeat_rate > 0``; when a user's clusters hold fewer distinct items than the drawn
  length the sequence is shorter (small catalogues only).
* **Repeats**: with ``repeat_rate`` R, each item after a user's first is, with
  probability R, a repeat of an earlier item of the same user, ``g`` positions back
  with ``g`` geometric (mean 5, recency-biased); R is then the share of repeats among
  those items.

Output is a pure function of the arguments (the seed included): chunk ``c`` draws from
``SeedSequence(seed, spawn_key=(c,))`` and the chunk size is fixed.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "tiny.txt"
>>> stats = write_synthetic_sequences(out, num_users=5, num_items=40, seed=1)
>>> stats.users, len(out.read_text().splitlines())
(5, 5)
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clue_fw.errors import DataError
from clue_fw.output_target import check_output_target

CHUNK_USERS = 32_768
"""Users generated (and written) at a time; part of the definition of the output."""
MAX_ITEMS = 2**31 - 1
MAX_MEAN_LENGTH = 100_000
_REPEAT_BACK_P = 0.2  # a repeat goes back Geometric(0.2) positions: 5 on average
_OVERSAMPLE = 1.5  # tokens drawn per kept token, to make up for dropped duplicates


@dataclass(frozen=True)
class SynthStats:
    """What :func:`write_synthetic_sequences` wrote."""

    path: Path
    users: int
    items: int  # distinct items that occur in the file
    interactions: int
    repeats: int  # interactions whose item the user had before
    seconds: float

    @property
    def mean_length(self) -> float:
        return self.interactions / max(self.users, 1)

    def summary(self) -> str:
        return (
            f"{self.users:,} users, {self.items:,} items, {self.interactions:,} interactions "
            f"(mean length {self.mean_length:.1f}, "
            f"{self.repeats / max(self.interactions, 1):.1%} repeats) in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class _World:
    """Item popularity and clusters, shared by every user (``O(num_items)`` memory)."""

    members: np.ndarray  # [M] item ids (1-based), cluster by cluster, each in cycle order
    cluster_start: np.ndarray  # [C + 1] offsets of each cluster in ``members``
    cumulative: np.ndarray  # [M] running sum of member weights, in ``members`` order
    cluster_cumulative: np.ndarray  # [C] running sum of cluster weights


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DataError(message)


def _check_arguments(
    num_users: int,
    num_items: int,
    mean_length: float,
    max_length: int | None,
    repeat_rate: float,
    seed: int,
    num_clusters: int | None,
) -> None:
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


def _make_world(
    num_items: int, num_clusters: int, popularity_exponent: float, rng: np.random.Generator
) -> _World:
    ranks = rng.permutation(num_items) + 1
    weight = ranks.astype(np.float64) ** -popularity_exponent  # weight[i - 1] of item i
    members = rng.permutation(num_items) + 1  # random clusters, random cycles
    bounds = np.linspace(0, num_items, num_clusters + 1).round().astype(np.int64)
    member_weight = weight[members - 1]
    cumulative = np.cumsum(member_weight)
    cluster_weight = np.add.reduceat(member_weight, bounds[:-1])
    return _World(members, bounds, cumulative, np.cumsum(cluster_weight))


def _draw_clusters(world: _World, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Clusters drawn by popularity (the total weight of their items)."""
    total = world.cluster_cumulative[-1]
    picked = np.searchsorted(world.cluster_cumulative, rng.random(shape) * total, side="right")
    return np.minimum(picked, world.cluster_cumulative.size - 1)


def _draw_members(world: _World, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions in ``world.members`` drawn by popularity inside each given cluster."""
    first, stop = world.cluster_start[clusters], world.cluster_start[clusters + 1]
    low = np.where(first > 0, world.cumulative[np.maximum(first - 1, 0)], 0.0)
    high = world.cumulative[stop - 1]
    picked = np.searchsorted(world.cumulative, low + rng.random(clusters.size) * (high - low))
    return np.clip(picked, first, stop - 1)  # float rounding stays inside the cluster


def _lengths(
    count: int, mean_length: float, max_length: int, rng: np.random.Generator
) -> np.ndarray:
    """``3 + floor(lognormal)`` lengths with mean about ``mean_length``, capped."""
    if mean_length <= 3:
        return np.full(count, 3, dtype=np.int64)
    sigma = 1.0
    mu = math.log(mean_length - 2.5) - sigma**2 / 2  # floor() loses 0.5 on average
    drawn = 3 + np.floor(rng.lognormal(mu, sigma, count)).astype(np.int64)
    return np.minimum(drawn, max_length)


def _walk(
    world: _World,
    lengths: np.ndarray,
    clusters_per_user: int,
    stay: float,
    explore: float,
    follow: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Item ids of every user's bursts, users one after another (``lengths[u]`` each)."""
    users = lengths.size
    total = int(lengths.sum())
    starts = np.zeros(users, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    user_of = np.repeat(np.arange(users), lengths)
    switch = rng.random(total) >= stay
    switch[starts] = True  # every user starts a burst
    segment = np.cumsum(switch) - 1
    segment_first = np.flatnonzero(switch)
    preferred = _draw_clusters(world, (users, clusters_per_user), rng)
    choice = preferred[
        user_of[segment_first], rng.integers(0, clusters_per_user, segment_first.size)
    ]
    exploring = rng.random(segment_first.size) < explore
    choice[exploring] = _draw_clusters(world, (int(exploring.sum()),), rng)
    cluster = choice[segment]
    fresh = switch | (rng.random(total) >= follow)
    fresh_at = np.flatnonzero(fresh)
    position = np.zeros(total, dtype=np.int64)
    position[fresh_at] = _draw_members(world, cluster[fresh_at], rng)
    anchor = np.maximum.accumulate(np.where(fresh, np.arange(total), 0))
    steps = np.arange(total) - anchor  # successors since the last fresh draw
    first = world.cluster_start[cluster]
    size = world.cluster_start[cluster + 1] - first
    return world.members[first + (position[anchor] - first + steps) % size]


def _distinct_prefix(
    items: np.ndarray, drawn: np.ndarray, lengths: np.ndarray, num_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's first ``lengths[u]`` distinct items of their ``drawn[u]`` draws.

    Returns ``(items, new_lengths)``. A user left with fewer than 3 items (a tiny
    catalogue) gets 3 consecutive item ids instead, distinct since ``num_items >= 3``.
    """
    users = drawn.size
    user_of = np.repeat(np.arange(users, dtype=np.int64), drawn)
    _, first_seen = np.unique(user_of * (num_items + 1) + items, return_index=True)
    keep = np.zeros(items.size, dtype=bool)
    keep[first_seen] = True
    kept_before = np.cumsum(keep) - keep  # kept tokens before each token, over all users
    starts = np.zeros(users, dtype=np.int64)
    np.cumsum(drawn[:-1], out=starts[1:])
    rank = kept_before - kept_before[starts][user_of]
    keep &= rank < lengths[user_of]
    new_lengths = np.bincount(user_of[keep], minlength=users)
    short = new_lengths < 3
    if not short.any():
        return items[keep], new_lengths
    keep &= ~short[user_of]
    new_lengths[short] = 3
    offsets = np.zeros(users + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.int64)
    out[offsets[user_of[keep]] + rank[keep]] = items[keep]  # whole users dropped: ranks hold
    short_users = np.flatnonzero(short)
    base = items[starts[short_users]] - 1  # 0-based, the user's first draw
    for step in range(3):
        out[offsets[short_users] + step] = (base + step) % num_items + 1
    return out, new_lengths


def _add_repeats(
    items: np.ndarray, lengths: np.ndarray, repeat_rate: float, rng: np.random.Generator
) -> np.ndarray:
    """Replace each non-first item, with probability ``repeat_rate``, by an earlier one."""
    total = items.size
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    within = np.arange(total) - np.repeat(starts, lengths)
    repeat = (within > 0) & (rng.random(total) < repeat_rate)
    back = np.minimum(rng.geometric(_REPEAT_BACK_P, total), within)
    source = np.where(repeat, np.arange(total) - back, np.arange(total))
    while True:  # a repeat of a repeat: follow the chain to the original (pointer jumping)
        further = source[source]
        if np.array_equal(further, source):
            return items[source]
        source = further


def _format_lines(users: np.ndarray, offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``user item item ...\\n`` for every row, as ASCII bytes (uint8), vectorised."""
    rows = users.size
    tokens = np.empty(rows + items.size, dtype=np.int64)
    user_slot = offsets[:-1] + np.arange(rows)
    is_user = np.zeros(tokens.size, dtype=bool)
    is_user[user_slot] = True
    tokens[user_slot] = users
    tokens[~is_user] = items
    powers = 10 ** np.arange(1, 19, dtype=np.int64)
    digits = 1 + np.searchsorted(powers, tokens, side="right")
    ends = np.cumsum(digits + 1) - 1  # the separator after each token
    out = np.empty(int(ends[-1]) + 1, dtype=np.uint8)
    out[ends] = ord(" ")
    out[ends[np.append(user_slot[1:] - 1, tokens.size - 1)]] = ord("\n")
    remaining = tokens.copy()
    for place in range(int(digits.max())):
        present = digits > place
        out[(ends - 1 - place)[present]] = ord("0") + remaining[present] % 10
        remaining //= 10
    return out


def write_synthetic_sequences(
    out: str | Path,
    num_users: int,
    num_items: int,
    seed: int = 0,
    mean_length: float = 50.0,
    repeat_rate: float = 0.0,
    *,
    max_length: int | None = None,
    num_clusters: int | None = None,
    clusters_per_user: int = 3,
    popularity_exponent: float = 0.8,
    stay: float = 0.8,
    explore: float = 0.1,
    follow: float = 0.6,
    overwrite: bool = False,
) -> SynthStats:
    """Write ``num_users`` synthetic users over items ``1..num_items`` to ``out``.

    Users are ``1..num_users``, one line each, in order. ``max_length`` caps a user's
    length (default ``20 * mean_length``, at least 1,000); ``num_clusters`` defaults to
    ``round(sqrt(num_items))``. The file is written to ``out`` + ``.tmp`` and renamed
    when complete, so a half-written file never carries the final name. An existing
    ``out`` is refused unless ``overwrite``. See the module docstring for the model.
    """
    started = time.perf_counter()
    _check_arguments(num_users, num_items, mean_length, max_length, repeat_rate, seed, num_clusters)
    for name, value in (("stay", stay), ("explore", explore), ("follow", follow)):
        _check(0 <= value <= 1, f"{name} is a probability and must be in [0, 1], got {value}.")
    _check(clusters_per_user >= 1, f"clusters_per_user must be >= 1, got {clusters_per_user}.")
    _check(
        popularity_exponent >= 0,
        f"popularity_exponent must be >= 0, got {popularity_exponent}.",
    )
    path = Path(out)
    if path.exists() and not overwrite:
        raise DataError(
            f"{path} already exists; pass --overwrite (overwrite=True) to replace it, or "
            "choose another --out."
        )
    try:
        check_output_target(path)
    except OSError as exc:
        raise DataError(f"Cannot write {path}: {exc.strerror}. Choose another --out.") from None
    cap = max_length if max_length is not None else max(1000, int(20 * mean_length))
    clusters = num_clusters or max(1, round(math.sqrt(num_items)))
    sequence = np.random.SeedSequence(seed)
    world = _make_world(
        num_items, clusters, popularity_exponent, np.random.default_rng(sequence.spawn(1)[0])
    )
    seen = np.zeros(num_items + 1, dtype=bool)
    interactions = repeats = 0
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            for chunk, first_user in enumerate(range(0, num_users, CHUNK_USERS)):
                count = min(CHUNK_USERS, num_users - first_user)
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, chunk)))
                lengths = _lengths(count, mean_length, cap, rng)
                drawn = np.ceil(lengths * _OVERSAMPLE).astype(np.int64) + 2
                items = _walk(world, drawn, clusters_per_user, stay, explore, follow, rng)
                items, lengths = _distinct_prefix(items, drawn, lengths, num_items)
                if repeat_rate > 0:
                    items = _add_repeats(items, lengths, repeat_rate, rng)
                    repeats += items.size - _distinct_count(items, lengths, num_items)
                offsets = np.zeros(count + 1, dtype=np.int64)
                np.cumsum(lengths, out=offsets[1:])
                users = np.arange(first_user + 1, first_user + count + 1, dtype=np.int64)
                handle.write(_format_lines(users, offsets, items).data)
                seen[items] = True
                interactions += items.size
        os.replace(temporary, path)
    except OSError as exc:
        _remove(temporary)
        raise DataError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    except BaseException:
        _remove(temporary)
        raise
    return SynthStats(
        path=path,
        users=num_users,
        items=int(seen.sum()),
        interactions=interactions,
        repeats=repeats,
        seconds=time.perf_counter() - started,
    )


def _remove(path: Path) -> None:
    """Delete a half-written file, if there is one."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _distinct_count(items: np.ndarray, lengths: np.ndarray, num_items: int) -> int:
    """The number of distinct (user, item) pairs."""
    user_of = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    return int(np.unique(user_of * (num_items + 1) + items).size)
