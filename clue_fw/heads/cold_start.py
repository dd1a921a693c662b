"""Cold-start cross-domain recommendation: recommend target-domain items to cold users.

The encoder reads each user's **source**-domain sequence; a linear softmax over all
**target** items scores the next target interaction (CLUE Sec. V-A-1, after PeterRec).
Each kept (user, target item) pair is one instance. Users (not pairs) are split
80/5/15, so a test user is never seen in training. Evaluation ranks the instance's
item among all target items (:mod:`clue_fw.metrics.ranking`, with ``ties``). No item
is excluded, and there is no ``exclude_seen``: the input history is the user's source
sequence, whose items are another catalogue, and the user has no target-domain
history (a user's other target items are held-out instances of the same split, not
input, so they stay rankable, as in PeterRec's evaluation). Metrics: MRR@k, Recall@k,
NDCG@k.

Where the two domains come from (``target.format``):

* ``genres``: one MovieLens dataset cut by disjoint genre sets of ``movies.dat``
  (:func:`clue_fw.data.domains.split_by_genres`); the recipe's ``data`` is the whole
  dataset and the source sequences are what is left after the target movies are
  taken out;
* ``pairs``: the recipe's ``data`` is the source domain and a file of ``user item``
  lines the target domain (:func:`clue_fw.data.domains.read_target_pairs`).

At most ``max_per_user`` (g) target interactions are kept per user
(:func:`clue_fw.data.domains.cold_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clue_fw.components import (
    DownstreamHead,
    LossOutput,
    SequenceEncoder,
    TaskData,
    user_vectors,
)
from clue_fw.data.dataset import SequenceData
from clue_fw.data.domains import cold_targets
from clue_fw.errors import DataError
from clue_fw.heads.specs import DEFAULT_TARGET_GENRES as DEFAULT_TARGET_GENRES
from clue_fw.heads.specs import MAX_PER_USER as MAX_PER_USER
from clue_fw.heads.specs import ColdStartSpec as ColdStartSpec
from clue_fw.heads.specs import GenreDomains as GenreDomains
from clue_fw.heads.specs import TargetPairs as TargetPairs
from clue_fw.heads.specs import TargetSource as TargetSource
from clue_fw.metrics.ranking import Ties, finalize_sums, ranking_sums


@dataclass(frozen=True)
class ColdStartData(TaskData):
    """Source sequences plus the kept (user row, target item) pairs.

    Target items are ``0..num_target_items - 1`` (the classes of the softmax).
    """

    pair_users: torch.Tensor  # [P]
    pair_items: torch.Tensor  # [P]
    num_target_items: int
    counts: dict[str, int]

    def stats(self) -> dict[str, Any]:
        return dict(self.counts)


class ColdStartHead(DownstreamHead):
    def __init__(
        self,
        encoder: SequenceEncoder,
        num_target_items: int,
        user_vector: str,
        ks: list[int],
        ties: Ties = "pessimistic",
    ) -> None:
        super().__init__()
        self.user_vector = user_vector
        self.ks = list(ks)
        self.ties = ties
        self.output = nn.Linear(encoder.dim, num_target_items)

    def logits(self, encoder: SequenceEncoder, items: torch.Tensor) -> torch.Tensor:
        return self.output(user_vectors(encoder(items), items, self.user_vector))

    def loss(self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]) -> LossOutput:
        loss = F.cross_entropy(self.logits(encoder, batch["items"]), batch["target"])
        return LossOutput(loss, {})

    @torch.no_grad()
    def metric_sums(
        self, encoder: SequenceEncoder, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        scores = self.logits(encoder, batch["items"])
        return ranking_sums(scores, batch["target"], self.ks, self.ties)

    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return finalize_sums(sums)


def cold_start_task_data(
    spec: ColdStartSpec, data: SequenceData, root: Path | None
) -> ColdStartData:
    """:meth:`ColdStartSpec.prepare`: cut the domains, cap each user's target pairs."""
    domains = spec.domains(data, root)
    users, items = cold_targets(domains.target, spec.max_per_user, spec.per_user, spec.split_seed)
    if domains.num_target_items < 2:
        raise DataError(
            f"The target domain has {domains.num_target_items} item(s); ranking needs at "
            "least 2 target items, or every metric is trivially 1. Choose target genres "
            "or a target file with more items."
        )
    if torch.unique(users).numel() < 3:
        raise DataError(
            f"Only {torch.unique(users).numel()} users have target interactions; a "
            "cold-start task needs at least 3 (train, valid, test)."
        )
    counts = {
        "source users": domains.source.num_users,
        "source items": domains.source.num_items,
        "source interactions": domains.source.num_interactions,
        "target items": domains.num_target_items,
        "target users": int(torch.unique(users).numel()),
        "target pairs": int(users.numel()),
        **domains.counts,
    }
    return ColdStartData(
        sequences=domains.source,
        pair_users=users,
        pair_items=items - 1,
        num_target_items=domains.num_target_items,
        counts=counts,
    )
