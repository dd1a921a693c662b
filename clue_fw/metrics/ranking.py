"""Full-ranking metrics of the held-out item: MRR@k, Recall@k and NDCG@k.

Scores are ``[B, V]``, one row per user; an item excluded from the ranking (padding,
``[MASK]``, the user's history under ``exclude_seen: history``) scores ``-inf``. The
target is found by index and is treated like any other item: a target that scores
``-inf`` (excluded, or padding) is a miss, ranked after everything.

Ties (``ties``) between the target and ``t`` other items that score the same, with
``g`` items above them:

* ``pessimistic`` (the default): every tied item goes before the target, rank
  ``g + t + 1``. A model that scores every item the same gets 0.
* ``average``: the expected value of each metric under a uniformly random tie-break,
  which puts the target at each of the ranks ``g + 1 .. g + t + 1`` with probability
  ``1 / (t + 1)``. Recall@k is the fraction of those ranks ``<= k``; MRR@k and NDCG@k
  are the means of ``1/rank`` and ``1/log2(rank + 1)`` over them (zero beyond k). A
  model that scores all N candidates the same gets Recall@k = k/N exactly.

A NaN score is never ranked silently: :func:`ranking_sums` counts the rows that hold
one under :data:`NAN_ROWS`, and :func:`clue_fw.training.loop.evaluate` refuses the
split (naming it and the first such batch) when that count is not zero.

>>> scores = torch.tensor([[0.1, 0.5, 0.5, 0.2]])
>>> target_ranks(scores, torch.tensor([1])).tolist()
[2.0]
>>> target_ranks(scores, torch.tensor([1]), ties="average").tolist()
[1.5]
"""

from __future__ import annotations

import math
import re

import torch

# The recipe-facing types live torch-free in options.py (head specs import them there).
from clue_fw.metrics.options import NAN_ROWS as NAN_ROWS
from clue_fw.metrics.options import TIES_DESCRIPTION as TIES_DESCRIPTION
from clue_fw.metrics.options import Cutoffs as Cutoffs
from clue_fw.metrics.options import Ties as Ties
from clue_fw.metrics.options import check_cutoffs as check_cutoffs

_METRIC = re.compile(r"^(mrr|recall|ndcg|hit)@(\d+)$")


def tie_blocks(
    scores: torch.Tensor, target: torch.Tensor, ties: Ties = "pessimistic"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each target can land: ranks ``first .. first + size - 1``, equally likely.

    ``scores`` ``[B, V]``, ``target`` ``[B]`` item indices. Returns ``first`` and
    ``size``, both ``[B]`` float64. ``pessimistic`` gives a single rank (size 1) below
    every tied item; ``average`` the whole block of tied ranks. A target scoring
    ``-inf`` has ``first = inf`` (a miss). A NaN row gives an arbitrary block; the
    caller must refuse it (:data:`NAN_ROWS`).
    """
    check_ties(ties)
    target_score = scores.gather(1, target.unsqueeze(1))
    better = (scores > target_score).sum(dim=1)
    tied = (scores == target_score).sum(dim=1) - 1
    return blocks_from_counts(better, tied, target_score.squeeze(1), ties)


def check_ties(ties: str) -> None:
    """Refuse a ``ties`` rule that is not ``pessimistic`` or ``average``."""
    if ties not in ("pessimistic", "average"):
        raise ValueError(f"ties must be 'pessimistic' or 'average', got {ties!r}")


def blocks_from_counts(
    better: torch.Tensor, tied: torch.Tensor, target_score: torch.Tensor, ties: Ties
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`tie_blocks` from ``[B]`` integer counts: ``better``, the items scoring above
    the target, and ``tied``, the other items scoring the same (negative counts as 0), and
    the ``[B]`` target scores (``-inf``: excluded, a miss). Item-blocked ranking
    (:mod:`clue_fw.metrics.blockwise`) adds its counts up over blocks and ends here too."""
    better = better.to(torch.float64)
    tied = tied.clamp(min=0).to(torch.float64)
    if ties == "pessimistic":
        first, size = better + tied + 1.0, torch.ones_like(better)
    else:
        first, size = better + 1.0, tied + 1.0
    excluded = target_score == float("-inf")
    return torch.where(excluded, math.inf, first), torch.where(excluded, 1.0, size)


def target_ranks(
    scores: torch.Tensor, target: torch.Tensor, ties: Ties = "pessimistic"
) -> torch.Tensor:
    """``[B]`` float64 1-based ranks of ``target`` (``[B]``) among ``scores`` (``[B, V]``).

    ``pessimistic``: 1 + the number of other items scoring at least the target's score.
    ``average``: the expected rank under a random tie-break, 1 + #higher + #tied / 2.
    A target scoring ``-inf`` (excluded) has rank ``inf``.
    """
    first, size = tie_blocks(scores, target, ties)
    return first + (size - 1.0) / 2.0


def expected_metric_sums(
    first: torch.Tensor, size: torch.Tensor, ks: list[int], max_rank: int | None = None
) -> dict[str, torch.Tensor]:
    """Per-batch sums of E[MRR@k], E[Recall@k], E[NDCG@k] and the ``count`` of rows.

    Row ``b``'s rank is uniform on the integers ``first[b] .. first[b] + size[b] - 1``
    (``first`` may be ``inf``: a miss); ``size = 1`` is a plain rank. Sums are float64;
    divide by ``count`` at the end (:func:`finalize_sums`), so the result does not
    depend on the batch size. Exact: only the ranks ``1 .. max(ks)`` can contribute, so
    each row sums ``1/r`` and ``1/log2(r + 1)`` over its block's ranks among them
    (``[B, max(ks)]`` work; a plain rank gives exactly ``1/r``). ``max_rank``, the
    number of candidates when known, bounds that work: no finite rank exceeds it.
    """
    device = first.device
    top = max(ks) if max_rank is None else max(1, min(max(ks), max_rank))
    positions = torch.arange(1, top + 1, dtype=torch.float64, device=device)
    reciprocal = 1.0 / positions
    discount = 1.0 / torch.log2(positions + 1.0)
    first = first.to(torch.float64).unsqueeze(1)
    size = size.to(torch.float64)
    last = first + size.unsqueeze(1) - 1.0
    in_block = (positions >= first) & (positions <= last)  # [B, top]
    sums = {"count": torch.tensor(float(first.numel()), dtype=torch.float64, device=device)}
    for k in ks:
        hits = in_block[:, :k].to(torch.float64)
        sums[f"mrr@{k}"] = ((hits @ reciprocal[:k]) / size).sum()
        sums[f"recall@{k}"] = (hits.sum(dim=1) / size).sum()
        sums[f"ndcg@{k}"] = ((hits @ discount[:k]) / size).sum()
    return sums


def ranking_sums(
    scores: torch.Tensor, target: torch.Tensor, ks: list[int], ties: Ties = "pessimistic"
) -> dict[str, torch.Tensor]:
    """A ranking head's ``metric_sums``: the metric sums of :func:`expected_metric_sums`
    for ``target`` among ``scores`` (excluded items already ``-inf``), plus
    :data:`NAN_ROWS`, the number of rows with a NaN score (no host sync here)."""
    first, size = tie_blocks(scores, target, ties)
    sums = expected_metric_sums(first, size, ks, max_rank=scores.shape[1])
    sums[NAN_ROWS] = torch.isnan(scores).any(dim=1).sum().to(torch.float64)
    return sums


def finalize_sums(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Divide every summed metric by ``count``."""
    count = float(sums["count"])
    skip = ("count", NAN_ROWS)
    return {k: float(v) / count for k, v in sums.items() if k not in skip and count > 0}


def parse_metric(name: str) -> tuple[str, int]:
    match = _METRIC.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a ranking metric like 'ndcg@10'")
    return match.group(1), int(match.group(2))


def reference_metrics(rank: float, k: int) -> dict[str, float]:
    """The three metrics of a single rank, written out plainly (used by tests and docs)."""
    if rank > k:
        return {"mrr": 0.0, "recall": 0.0, "ndcg": 0.0}
    return {"mrr": 1.0 / rank, "recall": 1.0, "ndcg": 1.0 / math.log2(rank + 1)}
