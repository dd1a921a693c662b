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
``SeedSequence(seed, spawn_key=(1, c))`` and the chunk size is fixed.

**Planted outputs** (opt-in; :mod:`clue_fw.data.synth_planted`, ``docs/synthetic.md``):
user attributes for the ``profile`` head, a cold-start target domain for the
``cold_start`` head and the generator's latent, all functions of the genres each user
prefers. They draw from streams of their own, so the sequences do not change.

**Safety.** Before a byte is written, the estimated size of every output
(:func:`estimated_sizes`) is compared with the free space of its file system and
refused (:class:`~clue_fw.errors.ResourceError`) when it cannot fit, unless
``check_space=False`` (``--force-size``). Every file goes to its name + ``.tmp`` and is
renamed into place when all are complete; an error, Ctrl-C or SIGTERM removes the
temporary files.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "tiny.txt"
>>> stats = write_synthetic_sequences(out, num_users=5, num_items=40, seed=1)
>>> stats.users, len(out.read_text().splitlines())
(5, 5)
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from clue_fw.data.synth_arguments import MAX_ITEMS as MAX_ITEMS
from clue_fw.data.synth_arguments import MAX_MEAN_LENGTH as MAX_MEAN_LENGTH
from clue_fw.data.synth_arguments import (
    check_arguments,
    check_model_arguments,
    target_domain_size,
)
from clue_fw.data.synth_output import (
    SynthStats,
    check_target,
    estimated_sizes,
    write_published,
)
from clue_fw.data.synth_output import (
    format_lines as _format_lines,  # called through this name (tests replace it)
)
from clue_fw.data.synth_planted import (
    ATTRIBUTES,
    LABEL_STREAM,
    TARGET_STREAM,
    TARGET_WORLD_STREAM,
    StreamedSafetensors,
    draw_attributes,
    genre_profiles,
    latent_metadata,
    latent_shapes,
    output_paths,
    stream,
    target_interactions,
    tastes,
)
from clue_fw.data.synth_world import World, draw_clusters, draw_members, make_world
from clue_fw.errors import ResourceError
from clue_fw.file_safety import human_size

CHUNK_USERS = 32_768
"""Users generated (and written) at a time; part of the definition of the output."""
_REPEAT_BACK_P = 0.2  # a repeat goes back Geometric(0.2) positions: 5 on average
_OVERSAMPLE = 1.5  # tokens drawn per kept token, to make up for dropped duplicates


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
    world: World,
    lengths: np.ndarray,
    clusters_per_user: int,
    stay: float,
    explore: float,
    follow: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Item ids of every user's bursts, users one after another (``lengths[u]`` each),
    and the users' preferred clusters ``[users, clusters_per_user]`` (the latent)."""
    users = lengths.size
    total = int(lengths.sum())
    starts = np.zeros(users, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    user_of = np.repeat(np.arange(users), lengths)
    switch = rng.random(total) >= stay
    switch[starts] = True  # every user starts a burst
    segment = np.cumsum(switch) - 1
    segment_first = np.flatnonzero(switch)
    preferred = draw_clusters(world, (users, clusters_per_user), rng)
    choice = preferred[
        user_of[segment_first], rng.integers(0, clusters_per_user, segment_first.size)
    ]
    exploring = rng.random(segment_first.size) < explore
    choice[exploring] = draw_clusters(world, (int(exploring.sum()),), rng)
    cluster = choice[segment]
    fresh = switch | (rng.random(total) >= follow)
    fresh_at = np.flatnonzero(fresh)
    position = np.zeros(total, dtype=np.int64)
    position[fresh_at] = draw_members(world, cluster[fresh_at], rng)
    anchor = np.maximum.accumulate(np.where(fresh, np.arange(total), 0))
    steps = np.arange(total) - anchor  # successors since the last fresh draw
    first = world.cluster_start[cluster]
    size = world.cluster_start[cluster + 1] - first
    return world.members[first + (position[anchor] - first + steps) % size], preferred


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
    attributes: bool = False,
    cold_start: bool = False,
    latent: bool = False,
    target_items: int | None = None,
    check_space: bool = True,
    overwrite: bool = False,
) -> SynthStats:
    """Write ``num_users`` synthetic users over items ``1..num_items`` to ``out``.

    Users are ``1..num_users``, one line each, in order. ``max_length`` caps a user's
    length (default ``20 * mean_length``, at least 1,000); ``num_clusters`` defaults to
    ``round(sqrt(num_items))``. See the module docstring for the model.

    Next to ``out`` (``DIR/NAME.txt``), with ``attributes`` the planted user attributes
    ``DIR/NAME_easy.csv``, ``NAME_hard.csv`` and ``NAME_taste.csv``; with ``cold_start``
    the target domain ``DIR/NAME_target.txt`` over ``target_items`` items (default
    ``max(num_items // 10, 5 * num_clusters)``); with ``latent`` the generator's latent
    ``DIR/NAME_latent.safetensors`` (:mod:`clue_fw.data.synth_planted`). None of them
    changes the sequences.

    Every file is written to its name + ``.tmp`` and renamed when all are complete, so a
    half-written file never carries a final name; on any error or interrupt the
    temporary files are removed. An existing output is refused unless ``overwrite``;
    with ``check_space``, so is a set of files whose estimated size
    (:func:`estimated_sizes`) exceeds the free space of the file system they go to.
    """
    started = time.perf_counter()
    check_arguments(num_users, num_items, mean_length, max_length, repeat_rate, seed, num_clusters)
    check_model_arguments(stay, explore, follow, clusters_per_user, popularity_exponent)
    clusters = num_clusters or max(1, round(math.sqrt(num_items)))
    targets = target_domain_size(target_items, cold_start, num_items, clusters)
    paths = output_paths(Path(out), attributes, cold_start, latent)
    for path in paths.values():
        check_target(path, overwrite)
    cap = max_length if max_length is not None else max(1000, int(20 * mean_length))
    if check_space:
        sizes = estimated_sizes(
            paths, num_users, num_items, mean_length, repeat_rate, targets,
            clusters_per_user, clusters,
        )  # fmt: skip
        _check_space(paths, sizes)
    sequence = np.random.SeedSequence(seed)
    world = make_world(
        num_items, clusters, popularity_exponent, np.random.default_rng(sequence.spawn(1)[0])
    )
    plan = _Plan(world, seed, explore, targets, popularity_exponent)
    sampler = _Sampler(
        world=world,
        num_items=num_items,
        seed=seed,
        mean_length=mean_length,
        max_length=cap,
        repeat_rate=repeat_rate,
        clusters_per_user=clusters_per_user,
        stay=stay,
        explore=explore,
        follow=follow,
    )
    written = write_published(
        paths, lambda handles: _write_users(handles, sampler, plan, num_users)
    )
    return SynthStats(
        path=paths["sequences"],
        users=num_users,
        items=written.items,
        interactions=written.interactions,
        repeats=written.repeats,
        seconds=time.perf_counter() - started,
        outputs=paths,
        target_interactions=written.target_interactions,
    )


class _Chunk(NamedTuple):
    """One chunk of users' sequences, users one after another."""

    items: np.ndarray  # every user's items, oldest first
    lengths: np.ndarray  # [users] items of each user
    preferred: np.ndarray  # [users, clusters_per_user] the preferred clusters (the latent)
    repeats: int  # items that repeat an earlier item of the same user


@dataclass(frozen=True)
class _Sampler:
    """Draws chunks of users' sequences from the item world (the module docstring's model)."""

    world: World
    num_items: int
    seed: int
    mean_length: float
    max_length: int  # the cap on a user's length
    repeat_rate: float
    clusters_per_user: int
    stay: float
    explore: float
    follow: float

    def chunk(self, chunk: int, count: int) -> _Chunk:
        """The ``count`` users of chunk ``chunk``, drawn from that chunk's own stream."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1, chunk)))
        lengths = _lengths(count, self.mean_length, self.max_length, rng)
        drawn = np.ceil(lengths * _OVERSAMPLE).astype(np.int64) + 2
        items, preferred = _walk(
            self.world, drawn, self.clusters_per_user, self.stay, self.explore, self.follow, rng
        )
        items, lengths = _distinct_prefix(items, drawn, lengths, self.num_items)
        repeats = 0
        if self.repeat_rate > 0:
            items = _add_repeats(items, lengths, self.repeat_rate, rng)
            repeats = items.size - _distinct_count(items, lengths, self.num_items)
        return _Chunk(items, lengths, preferred, repeats)


class _Written(NamedTuple):
    """What :func:`_write_users` wrote."""

    items: int  # distinct items that occur in the sequences
    interactions: int
    repeats: int
    target_interactions: int


def _write_users(
    handles: dict[str, BinaryIO], sampler: _Sampler, plan: _Plan, num_users: int
) -> _Written:
    """Draw users ``1..num_users`` chunk by chunk and write each chunk to every file."""
    writer = plan.open(handles, num_users, sampler.clusters_per_user)
    seen = np.zeros(sampler.num_items + 1, dtype=bool)
    interactions = repeats = target_pairs = 0
    for chunk, first_user in enumerate(range(0, num_users, CHUNK_USERS)):
        count = min(CHUNK_USERS, num_users - first_user)
        drawn = sampler.chunk(chunk, count)
        users = np.arange(first_user + 1, first_user + count + 1, dtype=np.int64)
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(drawn.lengths, out=offsets[1:])
        handles["sequences"].write(_format_lines(users, offsets, drawn.items).data)
        target_pairs += plan.write_chunk(handles, writer, chunk, users, drawn.preferred)
        seen[drawn.items] = True
        interactions += drawn.items.size
        repeats += drawn.repeats
    return _Written(int(seen.sum()), interactions, repeats, target_pairs)


class _Plan:
    """The planted outputs of one run: the taste profiles, the target world, the writers."""

    def __init__(
        self, world: World, seed: int, explore: float, target_items: int, exponent: float
    ) -> None:
        self.world, self.seed, self.explore = world, seed, explore
        self.profiles = genre_profiles(world.cluster_weights(), seed)
        self.target_world = (
            make_world(
                target_items, world.num_clusters, exponent, stream(seed, TARGET_WORLD_STREAM)
            )
            if target_items
            else None
        )

    def open(
        self, handles: dict[str, BinaryIO], num_users: int, clusters_per_user: int
    ) -> StreamedSafetensors | None:
        """Write the headers: the attribute CSVs' and the latent file's."""
        for name in ATTRIBUTES:
            if name in handles:
                handles[name].write(f"user,{name}\n".encode("ascii"))
        if "latent" not in handles:
            return None
        target_items = 0 if self.target_world is None else self.target_world.members.size
        shapes = latent_shapes(
            num_users, clusters_per_user, self.world.members.size, self.world.num_clusters,
            target_items,
        )  # fmt: skip
        writer = StreamedSafetensors(handles["latent"], shapes, latent_metadata(self.seed))
        writer.write("genre_profile", 0, self.profiles)
        writer.write("item_genre", 0, self.world.item_cluster())
        if self.target_world is not None:
            writer.write("target_item_genre", 0, self.target_world.item_cluster())
        return writer

    def write_chunk(
        self,
        handles: dict[str, BinaryIO],
        writer: StreamedSafetensors | None,
        chunk: int,
        users: np.ndarray,
        preferred: np.ndarray,
    ) -> int:
        """Write one chunk of users' planted outputs; return their target interactions."""
        taste = tastes(self.profiles, preferred)
        if "easy" in handles:
            rows = np.arange(users.size + 1, dtype=np.int64)
            labels = draw_attributes(taste, stream(self.seed, LABEL_STREAM, chunk))
            for name in ATTRIBUTES:
                handles[name].write(_format_lines(users, rows, labels[name], ",").data)
        if writer is not None:
            writer.write("preferred", int(users[0]) - 1, preferred)
            writer.write("taste", int(users[0]) - 1, taste)
        if self.target_world is None:
            return 0
        rng = stream(self.seed, TARGET_STREAM, chunk)
        lengths, items = target_interactions(self.target_world, preferred, self.explore, rng)
        pairs = np.arange(items.size + 1, dtype=np.int64)
        handles["target"].write(_format_lines(np.repeat(users, lengths), pairs, items).data)
        return int(items.size)


def _check_space(paths: dict[str, Path], sizes: dict[str, int]) -> None:
    """Refuse files that plainly cannot fit in the free space of their file system."""
    folder = paths["sequences"].parent.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # no answer (e.g. a parent is a file): the write reports its own error
    total = sum(sizes.values())
    if total <= free:
        return
    parts = ", ".join(f"{role} {human_size(size)}" for role, size in sizes.items())
    raise ResourceError(
        f"Refusing to write synthetic data: clue data synth would write about "
        f"{human_size(total)} ({parts}) to {paths['sequences'].parent}, but its file system "
        f"has {human_size(free)} free. Lower --users or --mean-length, give an --out on a "
        "larger file system, or pass --force-size (check_space=False) to write anyway; the "
        "sizes are estimates, and whatever was written is removed if the disk fills up."
    )


def _distinct_count(items: np.ndarray, lengths: np.ndarray, num_items: int) -> int:
    """The number of distinct (user, item) pairs."""
    user_of = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    return int(np.unique(user_of * (num_items + 1) + items).size)
