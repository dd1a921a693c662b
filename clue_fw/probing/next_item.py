"""A label-free check of frozen user vectors: do they predict the user's next item?

Each user's sequence is cut leave-one-out (the last item is the test target, the one
before it the validation target). The frozen encoder reads the history before the
target (its most recent ``max_len`` items), and every item is scored by the dot
product, or the cosine, of that user vector with the encoder's own item embedding. The
ranking is over all items, with the project's protocol (:mod:`clue_fw.metrics.ranking`):
every item of the input history is excluded (``exclude_seen: history``), and items
tied with the target rank above it (``ties: pessimistic``). The popularity ranker
(:mod:`clue_fw.baselines.popularity`, counts of the training part) is scored on the
same users under the same protocol.

Nothing is trained here: a collapsed encoder, whose user vectors all point one way,
ranks every user's items alike and lands at or below popularity. Users with fewer than
3 items have no validation and test target and are left out.

>>> import torch
>>> from clue_fw.data.csr import Csr
>>> history = Csr.from_lists([[1, 2]])
>>> vectors, items = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0], [1.0, 0], [0.9, 0]])
>>> round(rank_items(vectors, items, history, torch.tensor([3]), [1], "dot")["recall@1"], 3)
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from clue_fw.baselines.popularity import PopularityRanker, item_counts
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import MIN_LEAVE_ONE_OUT_LENGTH
from clue_fw.metrics.ranking import NAN_ROWS, finalize_sums, ranking_sums

Similarity = Literal["dot", "cosine"]
DEFAULT_KS: tuple[int, ...] = (10,)
BATCH_USERS = 1024
SCORE_ENTRIES = 1 << 25
"""At most this many scores (users x items, float64: 256 MiB) are held at once."""
PROTOCOL = {"exclude_seen": "history", "ties": "pessimistic"}


@dataclass(frozen=True)
class NextItemSplits:
    """Leave-one-out cut of the users with at least 3 items: ``rows`` (into the run's
    users), the histories before each target and the targets (internal item ids)."""

    rows: torch.Tensor
    train: Csr
    train_valid: Csr
    valid_target: torch.Tensor
    test_target: torch.Tensor

    @classmethod
    def of(cls, sequences: Csr) -> NextItemSplits:
        rows = torch.nonzero(sequences.lengths >= MIN_LEAVE_ONE_OUT_LENGTH).reshape(-1)
        kept = sequences.select_rows(rows)
        return cls(rows, kept.drop_last(2), kept.drop_last(1), kept.last(1), kept.last(0))

    def split(self, name: str) -> tuple[Csr, torch.Tensor]:
        """(history, target) of ``valid`` or ``test``."""
        return (
            (self.train, self.valid_target)
            if name == "valid"
            else (
                self.train_valid,
                self.test_target,
            )
        )


def _accumulate(totals: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> None:
    sums = dict(sums)
    nan_rows = float(sums.pop(NAN_ROWS))
    if nan_rows:
        raise ValueError(f"{nan_rows:.0f} users' item scores hold NaN; the vectors are broken")
    for name, value in sums.items():
        totals[name] = totals[name] + value if name in totals else value


def rank_items(
    vectors: torch.Tensor,
    items: torch.Tensor,
    history: Csr,
    target: torch.Tensor,
    ks: Sequence[int],
    similarity: Similarity = "dot",
) -> dict[str, float]:
    """``mrr@k``, ``recall@k`` and ``ndcg@k`` of ``target`` (``[U]`` internal ids) when
    every item ``1..I`` is scored by ``vectors`` (``[U, d]``) against ``items``
    (``[I, d]``, row ``j`` is item ``j + 1``), the items of ``history`` excluded."""
    user = vectors.double()
    table = items.double()
    if similarity == "cosine":
        user, table = F.normalize(user, dim=1), F.normalize(table, dim=1)
    totals: dict[str, torch.Tensor] = {}
    step = max(1, min(BATCH_USERS, SCORE_ENTRIES // (table.shape[0] + 1)))
    for start in range(0, user.shape[0], step):
        rows = torch.arange(start, min(start + step, user.shape[0]))
        scores = torch.full((rows.numel(), table.shape[0] + 1), float("-inf"), dtype=torch.float64)
        scores[:, 1:] = user[rows] @ table.T
        seen_row, seen = history.batch_pairs(rows)
        scores[seen_row, seen] = float("-inf")
        _accumulate(totals, ranking_sums(scores, target[rows], list(ks), "pessimistic"))
    return finalize_sums(totals)


def popularity_metrics(
    splits: NextItemSplits, num_items: int, ks: Sequence[int]
) -> dict[str, dict[str, float]]:
    """The popularity ranker (counts of the training part) on the same users and protocol."""
    ranker = PopularityRanker(item_counts(splits.train, num_items), "history", list(ks))
    result: dict[str, dict[str, float]] = {}
    for name in ("valid", "test"):
        history, target = splits.split(name)
        totals: dict[str, torch.Tensor] = {}
        for start in range(0, target.numel(), BATCH_USERS):
            rows = torch.arange(start, min(start + BATCH_USERS, target.numel()))
            seen_row, seen = history.batch_pairs(rows)
            batch = {"target": target[rows], "seen_row": seen_row, "seen_value": seen}
            _accumulate(totals, ranker.metric_sums(batch))
        result[name] = finalize_sums(totals)
    return result


def encoder_metrics(
    embed: Callable[[Csr], torch.Tensor],
    items: torch.Tensor,
    splits: NextItemSplits,
    ks: Sequence[int],
    similarity: Similarity,
) -> dict[str, dict[str, float]]:
    """Validation and test metrics of the user vectors ``embed(history)`` scored against
    ``items`` by ``similarity``."""
    result: dict[str, dict[str, float]] = {}
    for name in ("valid", "test"):
        history, target = splits.split(name)
        result[name] = rank_items(embed(history), items, history, target, ks, similarity)
    return result


__all__ = [
    "DEFAULT_KS",
    "NextItemSplits",
    "PROTOCOL",
    "encoder_metrics",
    "popularity_metrics",
    "rank_items",
]
