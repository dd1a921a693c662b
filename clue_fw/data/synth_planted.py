"""What ``clue data synth`` plants next to the sequences: user attributes, a cold-start
target domain and the generator's latent (``--attributes``, ``--cold-start``,
``--latent``).

Every synthetic user prefers ``clusters_per_user`` genres (item clusters, drawn by
genre popularity, with replacement); the bursts of their sequence visit these genres
(each burst picks one of them uniformly, or explores any genre with probability
``explore``). That draw, :attr:`preferred` ``[U, K]``, is the latent this module reads:
whatever is planted here is a function of genres the sequences really visit, so an
encoder that learns from behaviour which genres a user likes can recover it, and a
random vector cannot.

**Taste.** Each genre ``c`` gets a random profile ``g_c`` of :data:`TASTE_DIMS`
coordinates (standard normal, then centred and scaled to unit variance under the
genre-popularity distribution, so that a user's coordinates are centred on 0). A user's
taste is the mean profile of their preferred genres, ``t_u = mean_k g[preferred[u, k]]``,
linear in their genre-preference weights ``w_u`` (the share of their preferred draws
that fell on each genre).

**Attributes** (one ``user,label`` CSV each, the format the ``profile`` head reads):

* ``easy`` (binary): ``1`` when ``t_u[0] > 0``, then :data:`EASY_NOISE` (5%) of the
  labels flipped at random. A linear function of ``w_u``: the best possible accuracy
  given the latent is 95%.
* ``hard`` (binary): ``1`` when ``t_u[1] * t_u[2] > 0`` (two tastes that go together,
  an XOR of two linear functions of ``w_u``, which no linear read-out of the genre
  weights separates), then :data:`HARD_NOISE` (20%) of the labels flipped: the best
  possible accuracy given the latent is 80%.
* ``taste`` (:data:`TASTE_CLASSES` = 6 classes, ``0..5``): the argmax of
  ``t_u[3:9]``, then :data:`TASTE_NOISE` (10%) of the labels replaced by a class drawn
  uniformly (which may be the same one): the best accuracy is about 92%.

**Target domain** (``user item`` per line, the ``pairs`` format of the ``cold_start``
head): its own catalogue of items ``1..target_items``, with Zipf popularity (the same
exponent) and the same number of genres, target genre ``c`` corresponding to source
genre ``c``. Each user has ``k`` interactions, ``k`` uniform in ``1..``
:data:`TARGET_MAX_PER_USER` (5): each picks one of the user's preferred genres (or, with
probability ``explore``, any genre by popularity) and an item of that target genre by
popularity. A user's repeated draws of one item count once, so a few users have fewer
than ``k`` (never none).

**Latent** (a safetensors file, no pickle): ``preferred`` ``[U, K]`` int32 (0-based
genres), ``taste`` ``[U, 9]`` float32, ``genre_profile`` ``[C, 9]`` float32,
``item_genre`` ``[N]`` int32 (the genre of item ``i + 1``) and, with the target domain,
``target_item_genre`` ``[T]`` int32. Row ``u - 1`` is user ``u``.

Random streams: everything here draws from streams of its own (``SeedSequence(seed,
spawn_key=(2,))`` and onwards), so the sequence file is byte for byte the same with or
without these outputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from clue_fw.data.synth_world import World, draw_clusters, draw_members

TASTE_CLASSES = 6
TASTE_DIMS = 3 + TASTE_CLASSES
EASY_NOISE = 0.05
HARD_NOISE = 0.20
TASTE_NOISE = 0.10
TARGET_MAX_PER_USER = 5
ATTRIBUTES: tuple[str, ...] = ("easy", "hard", "taste")
"""Attribute names: each one is written to ``<out stem>_<name>.csv``."""

# Streams of SeedSequence(seed, spawn_key=...): (0,) is the world and (1, chunk) the
# sequences (clue_fw.data.synth); these are the planted outputs' own.
PROFILE_STREAM = 2
LABEL_STREAM = 3
TARGET_WORLD_STREAM = 4
TARGET_STREAM = 5


def stream(seed: int, *key: int) -> np.random.Generator:
    """The generator of stream ``key`` (a part of the definition of the output)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def genre_profiles(cluster_weight: np.ndarray, seed: int) -> np.ndarray:
    """``[C, TASTE_DIMS]`` profiles, centred and scaled under genre popularity."""
    raw = stream(seed, PROFILE_STREAM).standard_normal((cluster_weight.size, TASTE_DIMS))
    share = cluster_weight / cluster_weight.sum()
    centred = raw - share @ raw
    spread = np.sqrt(share @ centred**2)
    return centred / np.where(spread > 0, spread, 1.0)


def tastes(profiles: np.ndarray, preferred: np.ndarray) -> np.ndarray:
    """``[U, TASTE_DIMS]``: the mean profile of each user's preferred genres."""
    return profiles[preferred].mean(axis=1)


def draw_attributes(taste: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The planted labels (int64) of users with these tastes; see the module docstring."""
    users = taste.shape[0]
    easy = (taste[:, 0] > 0).astype(np.int64)
    hard = (taste[:, 1] * taste[:, 2] > 0).astype(np.int64)
    segment = np.argmax(taste[:, 3:], axis=1).astype(np.int64)
    easy ^= rng.random(users) < EASY_NOISE
    hard ^= rng.random(users) < HARD_NOISE
    replaced = rng.random(users) < TASTE_NOISE
    segment[replaced] = rng.integers(0, TASTE_CLASSES, int(replaced.sum()))
    return {"easy": easy, "hard": hard, "taste": segment}


def target_interactions(
    world: World,
    preferred: np.ndarray,
    explore: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths [U], items)``: each user's target items in order, users one after another."""
    users, per_user = preferred.shape
    drawn = rng.integers(1, TARGET_MAX_PER_USER + 1, users)
    user_of = np.repeat(np.arange(users, dtype=np.int64), drawn)
    genre = preferred[user_of, rng.integers(0, per_user, user_of.size)]
    exploring = rng.random(user_of.size) < explore
    genre[exploring] = draw_clusters(world, (int(exploring.sum()),), rng)
    items = world.members[draw_members(world, genre, rng)]
    _, first_seen = np.unique(user_of * (world.members.size + 1) + items, return_index=True)
    kept = np.sort(first_seen)  # a user's repeated draw of an item counts once, in order
    return np.bincount(user_of[kept], minlength=users), items[kept]


# --------------------------------------------------------------------------- latent file

_DTYPES = {np.dtype(np.int32): "I32", np.dtype(np.float32): "F32"}


@dataclass(frozen=True)
class TensorSlot:
    """One tensor of a :class:`StreamedSafetensors`: dtype, shape, byte offset."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int  # from the start of the file

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape[1:])


def latent_layout(
    shapes: Mapping[str, tuple[np.dtype, tuple[int, ...]]], metadata: Mapping[str, str]
) -> tuple[bytes, dict[str, TensorSlot], int]:
    """The safetensors header of these tensors, where each one goes, the file size."""
    entries: dict[str, object] = {"__metadata__": dict(metadata)}
    starts: dict[str, int] = {}
    start = 0
    for name, (dtype, shape) in shapes.items():
        size = np.dtype(dtype).itemsize * math.prod(shape)
        entries[name] = {
            "dtype": _DTYPES[np.dtype(dtype)],
            "shape": list(shape),
            "data_offsets": [start, start + size],
        }
        starts[name] = start
        start += size
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # the tensors start 8-byte aligned
    base = 8 + len(header)
    slots = {
        name: TensorSlot(np.dtype(dtype), shape, base + starts[name])
        for name, (dtype, shape) in shapes.items()
    }
    return len(header).to_bytes(8, "little") + header, slots, base + start


class StreamedSafetensors:
    """A safetensors file written row block by row block (users stream in chunks).

    The header (every shape is known up front) is written first; :meth:`write` puts
    rows ``first..first + len(rows)`` of a tensor at their place. The result is an
    ordinary safetensors file (``safetensors.numpy.load_file`` reads it).
    """

    def __init__(
        self,
        handle: BinaryIO,
        shapes: Mapping[str, tuple[np.dtype, tuple[int, ...]]],
        metadata: Mapping[str, str],
    ) -> None:
        header, self.slots, total = latent_layout(shapes, metadata)
        self.handle = handle
        handle.write(header)
        handle.truncate(total)

    def write(self, name: str, first_row: int, rows: np.ndarray) -> None:
        slot = self.slots[name]
        block = np.ascontiguousarray(rows, dtype=slot.dtype.newbyteorder("<"))
        self.handle.seek(slot.offset + first_row * slot.row_bytes)
        self.handle.write(block.tobytes())


def latent_shapes(
    num_users: int, clusters_per_user: int, num_items: int, num_clusters: int, target_items: int
) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """The tensors of the latent file (``target_items`` 0: no target domain)."""
    int32, float32 = np.dtype(np.int32), np.dtype(np.float32)
    shapes = {
        "preferred": (int32, (num_users, clusters_per_user)),
        "taste": (float32, (num_users, TASTE_DIMS)),
        "genre_profile": (float32, (num_clusters, TASTE_DIMS)),
        "item_genre": (int32, (num_items,)),
    }
    if target_items:
        shapes["target_item_genre"] = (int32, (target_items,))
    return shapes


def latent_metadata(seed: int) -> dict[str, str]:
    """What the latent file says about itself (safetensors metadata: strings)."""
    return {
        "format": "clue_fw synth latent 1",
        "seed": str(seed),
        "rules": json.dumps(
            {
                "taste": "mean of genre_profile over the user's preferred genres",
                "easy": f"taste[0] > 0, {EASY_NOISE:.0%} flipped",
                "hard": f"taste[1] * taste[2] > 0, {HARD_NOISE:.0%} flipped",
                "taste_class": f"argmax(taste[3:{TASTE_DIMS}]), {TASTE_NOISE:.0%} redrawn",
            }
        ),
    }


def output_paths(out: Path, attributes: bool, cold_start: bool, latent: bool) -> dict[str, Path]:
    """Every file one ``clue data synth`` writes, by role: ``sequences`` is ``out``."""
    stem = out.name.removesuffix(out.suffix) if out.suffix else out.name
    paths = {"sequences": out}
    if attributes:
        paths.update({name: out.with_name(f"{stem}_{name}.csv") for name in ATTRIBUTES})
    if cold_start:
        paths["target"] = out.with_name(f"{stem}_target.txt")
    if latent:
        paths["latent"] = out.with_name(f"{stem}_latent.safetensors")
    return paths
