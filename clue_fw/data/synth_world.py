"""The item world of ``clue data synth``: Zipf popularity and genres (item clusters).

Shared by the source sequences (:mod:`clue_fw.data.synth`) and the cold-start target
domain (:mod:`clue_fw.data.synth_planted`), which draws a second world of its own
catalogue with the same number of genres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class World:
    """Item popularity and clusters, shared by every user (``O(num_items)`` memory)."""

    members: np.ndarray  # [M] item ids (1-based), cluster by cluster, each in cycle order
    cluster_start: np.ndarray  # [C + 1] offsets of each cluster in ``members``
    cumulative: np.ndarray  # [M] running sum of member weights, in ``members`` order
    cluster_cumulative: np.ndarray  # [C] running sum of cluster weights

    @property
    def num_clusters(self) -> int:
        return int(self.cluster_cumulative.size)

    def cluster_weights(self) -> np.ndarray:
        """``[C]``: each cluster's popularity (the total weight of its items)."""
        return np.diff(self.cluster_cumulative, prepend=0.0)

    def item_cluster(self) -> np.ndarray:
        """``[M]`` int32: the (0-based) cluster of item ``i + 1``."""
        of_member = np.repeat(
            np.arange(self.num_clusters, dtype=np.int32), np.diff(self.cluster_start)
        )
        out = np.empty(self.members.size, dtype=np.int32)
        out[self.members - 1] = of_member
        return out


def make_world(
    num_items: int, num_clusters: int, popularity_exponent: float, rng: np.random.Generator
) -> World:
    ranks = rng.permutation(num_items) + 1
    weight = ranks.astype(np.float64) ** -popularity_exponent  # weight[i - 1] of item i
    members = rng.permutation(num_items) + 1  # random clusters, random cycles
    bounds = np.linspace(0, num_items, num_clusters + 1).round().astype(np.int64)
    member_weight = weight[members - 1]
    cumulative = np.cumsum(member_weight)
    cluster_weight = np.add.reduceat(member_weight, bounds[:-1])
    return World(members, bounds, cumulative, np.cumsum(cluster_weight))


def draw_clusters(world: World, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Clusters drawn by popularity (the total weight of their items)."""
    total = world.cluster_cumulative[-1]
    picked = np.searchsorted(world.cluster_cumulative, rng.random(shape) * total, side="right")
    return np.minimum(picked, world.cluster_cumulative.size - 1)


def draw_members(world: World, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions in ``world.members`` drawn by popularity inside each given cluster."""
    first, stop = world.cluster_start[clusters], world.cluster_start[clusters + 1]
    low = np.where(first > 0, world.cumulative[np.maximum(first - 1, 0)], 0.0)
    high = world.cumulative[stop - 1]
    picked = np.searchsorted(world.cumulative, low + rng.random(clusters.size) * (high - low))
    return np.clip(picked, first, stop - 1)  # float rounding stays inside the cluster
