"""A synthetic sequence generator with planted, learnable structure.

Items are split into ``num_clusters`` equal blocks and each block is arranged in
a random cycle. Every user belongs to one cluster and walks its cycle: with
probability ``stickiness`` the next item is the successor of the current one,
otherwise a uniformly random item of the user's cluster. A model that learns the
cycles predicts the next item far better than a random ranker (Recall@10 of a
random ranker is ``10 / num_items``), and users of one cluster share behaviour,
which gives user representations something to find.
"""

from __future__ import annotations

import torch

from clue_fw.data.readers import RawSequences


def generate_sequences(
    num_users: int = 1000,
    num_items: int = 200,
    min_length: int = 10,
    max_length: int = 40,
    num_clusters: int = 8,
    stickiness: float = 0.8,
    seed: int = 0,
) -> RawSequences:
    """Generate ``num_users`` sequences over item ids ``1..num_items``.

    Runs as tensor operations over all users at once (one step per position).
    """
    if num_items < num_clusters:
        raise ValueError(f"num_items ({num_items}) must be >= num_clusters ({num_clusters})")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length ({min_length}) <= max_length ({max_length})")
    generator = torch.Generator().manual_seed(seed)
    cluster_size = num_items // num_clusters
    # successor[i]: the next item of item i's cycle (ids are 1-based; index 0 unused).
    successor = torch.zeros(num_items + 1, dtype=torch.long)
    members = []
    for cluster in range(num_clusters):
        start = cluster * cluster_size + 1
        stop = num_items + 1 if cluster == num_clusters - 1 else start + cluster_size
        ids = torch.arange(start, stop)[torch.randperm(stop - start, generator=generator)]
        successor[ids] = torch.roll(ids, -1)
        members.append(ids)
    cluster_of_user = torch.randint(num_clusters, (num_users,), generator=generator)
    sizes = torch.tensor([m.numel() for m in members])
    table = torch.zeros(num_clusters, int(sizes.max()), dtype=torch.long)
    for cluster, ids in enumerate(members):
        table[cluster, : ids.numel()] = ids

    def random_member() -> torch.Tensor:
        pick = torch.rand(num_users, generator=generator) * sizes[cluster_of_user]
        return table[cluster_of_user, pick.long()]

    lengths = torch.randint(min_length, max_length + 1, (num_users,), generator=generator)
    steps = torch.zeros(num_users, max_length, dtype=torch.long)
    steps[:, 0] = random_member()
    for position in range(1, max_length):
        follow = torch.rand(num_users, generator=generator) < stickiness
        steps[:, position] = torch.where(follow, successor[steps[:, position - 1]], random_member())
    sequences = [steps[u, : int(lengths[u])].tolist() for u in range(num_users)]
    return RawSequences(users=list(range(1, num_users + 1)), sequences=sequences)
