"""Similar users: the exact k nearest users of each query user by cosine similarity.

:func:`nearest_users` works on a ``[N, d]`` matrix of user vectors (a run's, from
:meth:`~clue_fw.inference.LoadedRun.embed_run_users`, or a file that ``clue embed`` wrote,
read by :func:`~clue_fw.inference.export.read_vectors`). It is exact, not approximate: every
query is scored against every other user. Memory stays bounded at any scale because the
work goes in blocks, ``query_batch`` queries against ``candidate_block`` candidates at a
time, and a running top-k is kept per query, so a ``[Q, N]`` score matrix never exists
(1M x 1M users is 4 TB of float32 scores, and is never formed). On a GPU the blocks are
matrix products, exact in float32.

A user is never its own neighbour. Other users with an identical vector score 1.0 and are
kept. With fewer than ``k`` other users the last slots hold index ``-1`` and score
``-inf``, as :class:`~clue_fw.inference.Recommendations` does.

Example::

    >>> import torch
    >>> vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> found = nearest_users(vectors, k=1)
    >>> found.indices.tolist()
    [[1], [0], [1]]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from clue_fw.errors import ClueError

SCORES_PER_BLOCK = 1 << 24
"""Default size of one block of scores (``query_batch x candidate_block``): 64 MB of
float32, small for a GPU and for a laptop alike."""


@dataclass(frozen=True)
class NearestUsers:
    """``indices[q]`` (int64 ``[Q, k]``, rows of the input matrix, ``-1`` where there is no
    other user) are query ``q``'s nearest users, best first, with cosine ``scores[q]``
    (float32 ``[Q, k]``). ``queries`` (int64 ``[Q]``) are the rows that were asked about."""

    queries: torch.Tensor
    indices: torch.Tensor
    scores: torch.Tensor


def nearest_users(
    vectors: torch.Tensor,
    k: int,
    *,
    queries: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    query_batch: int | None = None,
    candidate_block: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> NearestUsers:
    """The ``k`` users nearest to each row of ``queries`` (rows of ``vectors``; default:
    every row) by cosine similarity, exactly; see the module docstring. ``progress(n)`` is
    called after each batch of ``n`` queries."""
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ClueError(
            f"Nearest users need a non-empty [users, dim] matrix of vectors; got shape "
            f"{tuple(vectors.shape)}."
        )
    if not torch.is_floating_point(vectors):
        raise ClueError(f"User vectors must be floating point; got {vectors.dtype}.")
    if not bool(torch.isfinite(vectors).all()):
        rows = torch.nonzero(~torch.isfinite(vectors).all(dim=1)).flatten()
        raise ClueError(
            f"{rows.numel():,} user vector(s) hold NaN or infinite values (first at row "
            f"{int(rows[0])}); cosine similarity is undefined for them. Re-export the vectors "
            "from a run whose metrics are finite."
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ClueError(f"k must be a whole number of at least 1; got {k!r}.")
    count = vectors.shape[0]
    if queries is None:
        queries = torch.arange(count)
    queries = queries.to(torch.int64).reshape(-1)
    if queries.numel() and (int(queries.min()) < 0 or int(queries.max()) >= count):
        raise ClueError(f"Query rows must lie in 0..{count - 1}.")
    device = torch.device(device)
    unit = torch.nn.functional.normalize(vectors.to(device=device, dtype=torch.float32), dim=1)
    block = candidate_block or max(1, min(count, SCORES_PER_BLOCK // 1024))
    batch = query_batch or max(1, SCORES_PER_BLOCK // block)
    kept = min(k, count - 1)
    indices = torch.full((queries.numel(), k), -1, dtype=torch.int64)
    scores = torch.full((queries.numel(), k), float("-inf"), dtype=torch.float32)
    for start in range(0, queries.numel(), batch):
        rows = queries[start : start + batch].to(device)
        if kept > 0:
            top_scores, top_indices = _top_k(unit, rows, kept, block)
            indices[start : start + rows.numel(), :kept] = top_indices.cpu()
            scores[start : start + rows.numel(), :kept] = top_scores.cpu()
        if progress is not None:
            progress(int(rows.numel()))
    return NearestUsers(queries, indices, scores)


def _top_k(
    unit: torch.Tensor, rows: torch.Tensor, k: int, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The running top-``k`` of ``rows`` against every other row of ``unit``, one block
    of candidates at a time (self excluded)."""
    query = unit[rows]
    best_scores = torch.full((rows.numel(), 0), float("-inf"), device=unit.device)
    best_indices = torch.zeros((rows.numel(), 0), dtype=torch.int64, device=unit.device)
    for start in range(0, unit.shape[0], block):
        candidates = unit[start : start + block]
        similarity = query @ candidates.T
        own = (rows >= start) & (rows < start + candidates.shape[0])
        if bool(own.any()):
            similarity[own.nonzero().flatten(), rows[own] - start] = float("-inf")
        taken = min(k, candidates.shape[0])
        block_scores, block_indices = similarity.topk(taken, dim=1)
        merged_scores = torch.cat([best_scores, block_scores], dim=1)
        merged_indices = torch.cat([best_indices, block_indices + start], dim=1)
        best_scores, order = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
        best_indices = merged_indices.gather(1, order)
    return best_scores, best_indices
