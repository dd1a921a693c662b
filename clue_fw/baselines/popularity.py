"""The popularity baseline: every item scored by its number of training interactions.

It is evaluated exactly as the ``next_item`` head evaluates a model: the same
leave-one-out split and example sets (:meth:`NextItemSpec.make_task`), the same
``exclude_seen`` (``history``: every item of the user's input history scores
``-inf``, the held-out item included), the same ``ties`` and cut-offs, and the same
exact metric sums (:func:`~clue_fw.metrics.ranking.expected_metric_sums`, finalised by
:func:`~clue_fw.metrics.ranking.finalize_sums`). Counts come from the training part of
every user (``split.train``: the validation and test items are never counted), and
both validation and test rank by them, like a model fitted on the training part.

Because every user shares one score vector, the rank of a target follows from the
sorted counts and the user's excluded items alone: :meth:`PopularityRanker.metric_sums`
is exact and costs ``O(B log V + H log H)`` for a batch of ``B`` users with ``H``
history items, where scoring a ``[B, V]`` matrix (:meth:`PopularityRanker.dense_metric_sums`,
the head's own path, kept for tests and checks) costs ``O(B V)``.

>>> import torch
>>> from clue_fw.data.csr import Csr
>>> ranker = PopularityRanker(item_counts(Csr.from_lists([[1, 2, 2], [2, 3]]), 3), "none", [1])
>>> ranker.scores.tolist()  # item 0 is padding
[-inf, 1.0, 3.0, 1.0]
>>> batch = {"target": torch.tensor([2, 3])}
>>> finalize_sums(ranker.metric_sums(batch))["recall@1"]
0.5
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clue_fw.components import BuildContext, HeadSpec, Ranking, TaskData
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import leave_one_out
from clue_fw.data.examples import Batch
from clue_fw.errors import RecipeError
from clue_fw.heads.next_item import ExcludeSeen
from clue_fw.metrics.ranking import (
    NAN_ROWS,
    Ties,
    expected_metric_sums,
    finalize_sums,
    ranking_sums,
)

if TYPE_CHECKING:
    from clue_fw.recipe.protocol import RecipeLike

BATCH_USERS = 16_384
"""Users ranked at once by the exact popularity path (memory: their history)."""


def item_counts(train: Csr, num_items: int) -> torch.Tensor:
    """``[num_items + 1]`` int64: how often each item occurs in ``train`` (0 is padding)."""
    return torch.bincount(train.values, minlength=num_items + 1)[: num_items + 1]


class PopularityRanker:
    """Ranks every item by a fixed count; the ``next_item`` head's ``metric_sums`` contract.

    ``counts`` ``[V]`` (index 0, padding, always scores ``-inf``); ``exclude_seen``,
    ``ks`` and ``ties`` as in :class:`~clue_fw.heads.next_item.NextItemSpec`. A batch
    holds ``target`` ``[B]`` and, under ``exclude_seen: history``, the ragged
    ``seen_row`` / ``seen_value`` pairs of :meth:`NextItemSpec.make_task`.
    """

    def __init__(
        self,
        counts: torch.Tensor,
        exclude_seen: ExcludeSeen,
        ks: list[int],
        ties: Ties = "pessimistic",
    ) -> None:
        if exclude_seen not in ("history", "none"):
            raise ValueError(f"exclude_seen must be 'history' or 'none', got {exclude_seen!r}")
        if ties not in ("pessimistic", "average"):
            raise ValueError(f"ties must be 'pessimistic' or 'average', got {ties!r}")
        if counts.dim() != 1 or counts.numel() < 2:
            raise ValueError("counts must be [V] with V >= 2 (padding plus at least one item)")
        self.scores = counts.to(device="cpu", dtype=torch.float64).clone()
        self.scores[0] = -math.inf
        self._scores = self.scores.numpy()
        self._sorted = np.sort(self._scores[1:])  # ascending, every real item
        self.exclude_seen = exclude_seen
        self.ks = list(ks)
        self.ties = ties

    @property
    def num_columns(self) -> int:
        """``V``: the columns of a score row (padding plus every item)."""
        return int(self.scores.numel())

    def metric_sums(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Exact ranking sums of ``batch["target"]``, without a ``[B, V]`` score matrix.

        Works in numpy on the CPU (tensors on another device are copied over): the
        gathers and counts here are an order of magnitude faster there than in torch.
        """
        target = batch["target"].cpu().numpy()
        score = self._scores[target]
        right = np.searchsorted(self._sorted, score, side="right")
        above = self._sorted.size - right  # items scoring above the target
        level = right - np.searchsorted(self._sorted, score, side="left")  # tied, target too
        excluded_target = score == -math.inf  # padding as a target: a miss, as in the head
        if self.exclude_seen == "history":
            rows, values = self._distinct_pairs(batch["seen_row"], batch["seen_value"])
            seen_score, own = self._scores[values], score[rows]
            above -= np.bincount(rows[seen_score > own], minlength=target.size)
            level -= np.bincount(rows[seen_score == own], minlength=target.size)
            excluded_target[rows[values == target[rows]]] = True
        better = above.astype(np.float64)
        tied = np.maximum(level - 1, 0).astype(np.float64)
        if self.ties == "pessimistic":
            first, size = better + tied + 1.0, np.ones_like(better)
        else:
            first, size = better + 1.0, tied + 1.0
        first[excluded_target] = math.inf
        size[excluded_target] = 1.0
        sums = expected_metric_sums(
            torch.from_numpy(first), torch.from_numpy(size), self.ks, max_rank=self.num_columns
        )
        sums[NAN_ROWS] = torch.zeros((), dtype=torch.float64)
        return sums

    def _distinct_pairs(
        self, rows: torch.Tensor, values: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(row, value)`` pairs without repeats (an item seen twice is excluded once)."""
        width = self.num_columns
        keys = np.sort(rows.cpu().numpy() * width + values.cpu().numpy())
        if keys.size:
            fresh = np.empty(keys.size, dtype=bool)
            fresh[0] = True
            np.not_equal(keys[1:], keys[:-1], out=fresh[1:])
            keys = keys[fresh]
        return keys // width, keys % width

    def dense_metric_sums(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The same sums the ``next_item`` head's way: a ``[B, V]`` score matrix with the
        history set to ``-inf``, then :func:`ranking_sums`. ``O(B V)``: for checks."""
        target = batch["target"]
        scores = self.scores.unsqueeze(0).repeat(target.numel(), 1)
        if self.exclude_seen == "history":
            scores[batch["seen_row"], batch["seen_value"]] = -math.inf
        return ranking_sums(scores, target, self.ks, self.ties)


def evaluate_popularity(
    task_data: TaskData, head: HeadSpec, batch_size: int = BATCH_USERS
) -> dict[str, dict[str, float]]:
    """``{"valid": {...}, "test": {...}}``: the popularity baseline's metrics under the
    protocol of ``head`` (its ``exclude_seen``, ``ties`` and ``ks``), on the example
    sets ``head.make_task`` builds. The model reads no windows, so the task is built
    with ``max_len`` 1; the excluded history is the whole input history either way."""
    data = task_data.sequences
    task = head.make_task(task_data, BuildContext(num_items=data.num_items, max_len=1), "recent")
    counts = item_counts(leave_one_out(data).train, data.num_items)
    ranking = _ranking(head)
    ranker = PopularityRanker(counts, ranking.exclude_seen, ranking.ks, ranking.ties)
    metrics: dict[str, dict[str, float]] = {}
    for split in ("valid", "test"):
        totals: dict[str, torch.Tensor] = {}
        for batch in task.split(split).batches(batch_size):
            sums = ranker.metric_sums(batch)
            sums.pop(NAN_ROWS)
            for name, value in sums.items():
                totals[name] = totals[name] + value if name in totals else value
        metrics[split] = finalize_sums(totals)
    return metrics


def evaluate_recipe(recipe: RecipeLike, data_root: Path | None = None) -> dict[str, Any]:
    """The popularity baseline on a validated recipe's data, under its ``next_item`` head's
    protocol: what ``clue baseline RECIPE`` prints (a JSON-ready mapping)."""
    from clue_fw.data.loading import load_data

    head = recipe.finetune.head
    ranking = _ranking(head)
    started = time.perf_counter()
    task_data = head.prepare(load_data(recipe.data, data_root), data_root)
    data = task_data.sequences
    metrics = evaluate_popularity(task_data, head)
    return {
        "model": "popularity",
        "recipe": recipe.name,
        "protocol": {"exclude_seen": ranking.exclude_seen, "ties": ranking.ties, "ks": ranking.ks},
        "data": {
            "users": data.num_users,
            "items": data.num_items,
            "interactions": data.num_interactions,
        },
        **metrics,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _ranking(head: HeadSpec) -> Ranking:
    """The protocol of a head that ranks items (:attr:`HeadSpec.ranking`), or a
    RecipeError for one that ranks none."""
    ranking = head.ranking
    if ranking is None:
        raise RecipeError(
            f"clue baseline evaluates next-item recommendation, but finetune.head.kind is "
            f"{head.kind!r}, which ranks no items. Use a recipe whose finetune.head ranks "
            "items, such as `kind: next_item` (its exclude_seen, ties and ks set the protocol)."
        )
    return ranking
