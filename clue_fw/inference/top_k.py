"""The top ``k`` items of a batch of users, for ``recommend``: scored at once or in blocks.

:func:`top_k_at_once` asks the head for a ``[B, items + 1]`` matrix
(``head.item_scores``, the contract of every ranking head); :func:`top_k_in_blocks` asks
a head that has an ``item_scorer`` (``next_item``) for the scores of ``item_block`` items
at a time and keeps a running top-k (:func:`~clue_fw.metrics.blockwise.blockwise_top_k`).
Both score the user's ``seen`` (row, item) pairs and the items that are not candidates
``-inf``, and return ``(scores [B, k], item ids [B, k], rows with a NaN score [B])``.
The items and scores are the same; equal scores come lowest id first in blocks, in
``torch.topk``'s unspecified order at once.
"""

from __future__ import annotations

import torch

from clue_fw.components import DownstreamHead, SequenceEncoder
from clue_fw.errors import ClueError
from clue_fw.inference.results import Candidates, whole_number
from clue_fw.metrics.blockwise import ExcludedPairs, blockwise_top_k
from clue_fw.provenance import plugin_call


def item_block_of(head: DownstreamHead, item_block: int | None, which: str) -> int | None:
    """The items to score at once: ``item_block``, else the head's own
    (``finetune.head.item_block``); None (every item at once) for a head without an
    ``item_scorer``, for which an ``item_block`` asked for is a ClueError naming ``which``
    head it is."""
    scores_in_blocks = callable(getattr(head, "item_scorer", None))
    if item_block is None:
        return getattr(head, "item_block", None) if scores_in_blocks else None
    block = whole_number(item_block, "item_block", 1)
    if not scores_in_blocks:
        raise ClueError(
            f"item_block: {which} ({type(head).__name__}) does not score items in blocks "
            "(it has no item_scorer); leave item_block out to score every item at once."
        )
    return block


def top_k_at_once(
    head: DownstreamHead,
    encoder: SequenceEncoder,
    batch: torch.Tensor,
    k: int,
    seen: tuple[torch.Tensor, torch.Tensor] | None,
    candidates: Candidates | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scores, item ids, NaN rows) of the top ``k`` of ``head.item_scores``: one
    ``[B, items + 1]`` matrix, ``seen`` (row, item) pairs and non-candidates ``-inf``."""
    with plugin_call(head, "item_scores"):
        logits = head.item_scores(encoder, batch).float()
    if seen is not None:
        logits[seen[0].to(logits.device), seen[1].to(logits.device)] = float("-inf")
    if candidates is not None:
        logits[:, ~candidates.allowed] = float("-inf")
    top, index = torch.topk(logits, k, dim=1)
    return top, index, torch.isnan(logits).any(dim=1)


def top_k_in_blocks(
    head: DownstreamHead,
    encoder: SequenceEncoder,
    batch: torch.Tensor,
    k: int,
    item_block: int,
    seen: tuple[torch.Tensor, torch.Tensor] | None,
    candidates: Candidates | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`top_k_at_once` over blocks of ``item_block`` items
    (:func:`~clue_fw.metrics.blockwise.blockwise_top_k`), from ``head.item_scorer``."""
    with plugin_call(encoder, "forward"):
        hidden = encoder(batch).user
    with plugin_call(head, "item_scorer"):
        scorer = head.item_scorer(encoder, hidden)  # type: ignore[operator]
    excluded = None
    if seen is not None:
        rows, columns = (part.to(scorer.device) for part in seen)
        excluded = ExcludedPairs.of(rows, columns, scorer.num_columns)
    allowed = None if candidates is None else candidates.allowed
    return blockwise_top_k(scorer, k, item_block, excluded, allowed)
