"""Full ranking over blocks of items: exact metrics and top-k without a ``[B, N]`` matrix.

Scoring a batch of ``B`` users against ``N`` items at once makes a ``[B, N]`` score
matrix (4 GB at 1,024 users x 1M items, plus the comparisons made from it). Here the
items are scored ``item_block`` columns at a time (:class:`~clue_fw.metrics.scoring.
ItemScorer`) and only per-row running results are kept:

* :func:`blockwise_ranking_sums`: for each user, how many items score above the target
  and how many tie with it, and whether a score is NaN. Those counts are what
  :func:`~clue_fw.metrics.ranking.ranking_sums` derives from the whole matrix, so the
  ranks, the tie rule (``ties``) and the metrics are the same. Excluded (user, item)
  pairs (``exclude_seen: history``) count as if they scored ``-inf``: not above, not
  tied, not NaN, and a target among them is a miss.
* :func:`blockwise_top_k`: the ``k`` best columns of each row, merged block by block.

The target's own score is taken from a block product, as the whole-matrix path takes it
from the whole product: the first block scores each user's target column first (then the
first items), so every count compares scores made by the same product. The result equals
the one-matrix path whenever the product of a block of columns equals those columns of
the whole product, which holds on the CPU and is what the tests check.

Ties in :func:`blockwise_top_k`: equal scores are ordered by column id, lowest first,
which is what a stable descending sort of the whole row gives. (``torch.topk``, used
when every item is scored at once, leaves the order of equal scores unspecified.)

>>> from clue_fw.metrics.ranking import ranking_sums
>>> from clue_fw.metrics.scoring import ItemScorer
>>> scorer = ItemScorer(torch.tensor([[1.0]]), torch.tensor([[0.0], [3.0], [1.0], [3.0]]))
>>> values, columns, nan_rows = blockwise_top_k(scorer, k=3, item_block=2)
>>> values.tolist(), columns.tolist(), nan_rows.tolist()
([[3.0, 3.0, 1.0]], [[1, 3, 2]], [False])
>>> sums = blockwise_ranking_sums(scorer, torch.tensor([2]), [2], "pessimistic", 2)
>>> float(sums["recall@2"]), float(sums["recall@2"]) == float(ranking_sums(
...     scorer.scores(slice(None)), torch.tensor([2]), [2])["recall@2"])
(0.0, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from clue_fw.metrics.ranking import (
    NAN_ROWS,
    Ties,
    blocks_from_counts,
    check_ties,
    expected_metric_sums,
)
from clue_fw.metrics.scoring import ItemScores

_LOW_32 = (1 << 32) - 1


def check_item_block(item_block: int) -> int:
    """``item_block`` if it is a whole number of at least 1; a ValueError otherwise."""
    if isinstance(item_block, bool) or not isinstance(item_block, int) or item_block < 1:
        raise ValueError(
            f"item_block must be a whole number of items, at least 1 (or null: every item at "
            f"once), got {item_block!r}; set finetune.head.item_block."
        )
    return item_block


@dataclass(frozen=True)
class ExcludedPairs:
    """(row, column) pairs that score ``-inf``: ``rows`` and ``columns`` are int64 ``[P]``
    (a row's history items, say, which may repeat). ``distinct`` marks each pair's first
    occurrence, so a repeated pair is counted once."""

    rows: torch.Tensor
    columns: torch.Tensor
    distinct: torch.Tensor

    @classmethod
    def of(cls, rows: torch.Tensor, columns: torch.Tensor, num_columns: int) -> ExcludedPairs:
        """The pairs ``(rows[p], columns[p])``, repeats found by sorting (no host sync)."""
        keys = rows.to(torch.int64) * num_columns + columns.to(torch.int64)
        ordered, order = torch.sort(keys)
        first = torch.ones_like(ordered, dtype=torch.bool)
        first[1:] = ordered[1:] != ordered[:-1]
        distinct = torch.empty_like(first)
        distinct[order] = first
        return cls(rows.to(torch.int64), columns.to(torch.int64), distinct)

    def hits(self, per_row: torch.Tensor) -> torch.Tensor:
        """``[B]`` bool: row ``b``'s column ``per_row[b]`` is one of the pairs."""
        found = torch.zeros_like(per_row, dtype=torch.int64)
        hit = self.distinct & (self.columns == per_row[self.rows])
        return found.index_add_(0, self.rows, hit.to(torch.int64)) > 0

    def inside(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask of the distinct pairs whose column is in ``[start, stop)``, each pair's
        column offset in that block, clamped into it)."""
        mask = self.distinct & (self.columns >= start) & (self.columns < stop)
        return mask, (self.columns - start).clamp(0, stop - start - 1)


def blockwise_ranking_sums(
    scorer: ItemScores,
    target: torch.Tensor,
    ks: list[int],
    ties: Ties,
    item_block: int,
    excluded: ExcludedPairs | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`~clue_fw.metrics.ranking.ranking_sums` of the ``[B, N]`` scores of
    ``scorer`` (``excluded`` pairs set to ``-inf``), for the ``[B]`` column ids
    ``target``, computed ``item_block`` columns at a time. Sums (and :data:`NAN_ROWS`)
    stay on the device: no host sync."""
    check_ties(ties)
    check_item_block(item_block)
    rows, columns = scorer.rows, scorer.num_columns
    counts = _Counts.zeros(rows, target.device)
    target_score = torch.full((rows,), float("nan"), device=target.device)
    # Virtual columns: each row's target column (0 .. rows - 1), then the items.
    for start, stop, fresh in blocks_of(rows + columns, item_block):
        if start < rows:
            ids = torch.cat([target[start : min(stop, rows)], _arange(0, stop - rows, target)])
            block = scorer.scores(ids)
            own = _arange(fresh, min(stop, rows), target)
            target_score[own] = block[own, own - start]
        else:
            block = scorer.scores(slice(start - rows, stop - rows))
        counted = max(fresh, rows)  # the first virtual column not counted yet
        if counted < stop:
            items = block[:, counted - start :]
            counts.add(items, counted - rows, target, target_score, excluded)
    if excluded is not None:
        target_score = target_score.masked_fill(excluded.hits(target), float("-inf"))
    first, size = blocks_from_counts(counts.above, counts.tied, target_score, ties)
    sums = expected_metric_sums(first, size, ks, max_rank=columns)
    sums[NAN_ROWS] = (counts.nans > 0).sum().to(torch.float64)
    return sums


@dataclass
class _Counts:
    """Per row, over the blocks so far: items above the target, items tied with it (the
    target itself not counted) and NaN scores."""

    above: torch.Tensor
    tied: torch.Tensor
    nans: torch.Tensor

    @classmethod
    def zeros(cls, rows: int, device: torch.device) -> _Counts:
        def zero() -> torch.Tensor:
            return torch.zeros(rows, dtype=torch.int64, device=device)

        return cls(zero(), zero(), zero())

    def add(
        self,
        block: torch.Tensor,
        first_item: int,
        target: torch.Tensor,
        target_score: torch.Tensor,
        excluded: ExcludedPairs | None,
    ) -> None:
        """Count ``block`` (``[B, n]``, the scores of items ``first_item ..``): every
        column, less the target's own column (not counted against itself; a NaN there
        still counts) and the excluded pairs (as if they scored ``-inf``)."""
        width = block.shape[1]
        threshold = target_score.unsqueeze(1)
        self.above += (block > threshold).sum(dim=1)
        self.tied += (block == threshold).sum(dim=1)
        self.nans += torch.isnan(block).sum(dim=1)
        own = (target >= first_item) & (target < first_item + width)
        offset = (target - first_item).clamp(0, width - 1).unsqueeze(1)
        value = block.gather(1, offset).squeeze(1)
        self.above -= (own & (value > target_score)).to(torch.int64)
        self.tied -= (own & (value == target_score)).to(torch.int64)
        if excluded is None:
            return
        inside, offsets = excluded.inside(first_item, first_item + width)
        value = block[excluded.rows, offsets]
        threshold = target_score[excluded.rows]
        for count, drop in (
            (self.above, value > threshold),
            (self.tied, value == threshold),
            (self.nans, torch.isnan(value)),
        ):
            count.index_add_(0, excluded.rows, -(inside & drop).to(torch.int64))


def blockwise_top_k(
    scorer: ItemScores,
    k: int,
    item_block: int,
    excluded: ExcludedPairs | None = None,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best columns of each row of ``scorer``'s scores, best first, equal scores
    by lower column first: ``(values [B, k] float32, columns [B, k] int64, nan_rows [B]
    bool)``. ``excluded`` pairs and the columns where ``allowed`` (``[N]`` bool) is False
    score ``-inf`` (they come last, as in a sort of the whole row); ``nan_rows`` marks
    the rows with a NaN score elsewhere, whose top-k means nothing. ``k`` is at most the
    number of columns."""
    check_item_block(item_block)
    columns = scorer.num_columns
    if not 1 <= k <= columns:
        raise ValueError(f"k must be in 1..{columns} (the number of columns), got {k}")
    device = scorer.device
    best = torch.empty((scorer.rows, 0), dtype=torch.int64, device=device)
    nan_rows = torch.zeros(scorer.rows, dtype=torch.bool, device=device)
    for start, stop, fresh in blocks_of(columns, item_block):
        block = scorer.scores(slice(start, stop))
        if excluded is not None:
            inside, offsets = excluded.inside(start, stop)
            block[excluded.rows[inside], offsets[inside]] = float("-inf")
        if allowed is not None:
            block.masked_fill_(~allowed[start:stop].unsqueeze(0), float("-inf"))
        block = block[:, fresh - start :]
        nan_rows |= torch.isnan(block).any(dim=1)
        keys = order_keys(block, fresh)
        top = keys.topk(min(k, keys.shape[1]), dim=1).values
        merged = torch.cat([best, top], dim=1)
        best = merged.topk(min(k, merged.shape[1]), dim=1).values
    return *decode_keys(best), nan_rows


def blocks_of(total: int, item_block: int) -> Iterator[tuple[int, int, int]]:
    """``(start, stop, fresh)`` of the blocks that cover columns ``0 .. total - 1``: each
    block is ``item_block`` wide (or ``total``, if less), so every product has one shape;
    the last one is moved back to end at ``total``, and ``fresh`` is its first column that
    no earlier block held.

    >>> list(blocks_of(10, 4))
    [(0, 4, 0), (4, 8, 4), (6, 10, 8)]
    """
    width = min(item_block, total)
    done = 0
    while done < total:
        start = min(done, total - width)
        yield start, start + width, done
        done = start + width


def _arange(start: int, stop: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(start, max(start, stop), dtype=torch.int64, device=like.device)


def order_keys(scores: torch.Tensor, first_column: int) -> torch.Tensor:
    """int64 keys of float32 ``scores`` ``[B, n]`` (of columns ``first_column ..``) whose
    order is: higher score first, then lower column; every key is distinct, so
    ``topk`` of the keys is a stable descending sort's prefix. ``-0.0`` counts as
    ``0.0``; NaN above everything (callers refuse NaN rows)."""
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    column = torch.arange(
        first_column, first_column + scores.shape[1], dtype=torch.int64, device=scores.device
    )
    return ordered * (1 << 32) + (_LOW_32 - column)


def decode_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 scores and int64 columns that :func:`order_keys` encoded."""
    low = keys & _LOW_32
    ordered = torch.div(keys - low, 1 << 32, rounding_mode="floor")
    bits = torch.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF).to(torch.int32)
    return bits.view(torch.float32), _LOW_32 - low


__all__ = [
    "ExcludedPairs",
    "blocks_of",
    "blockwise_ranking_sums",
    "blockwise_top_k",
    "check_item_block",
    "decode_keys",
    "order_keys",
]
