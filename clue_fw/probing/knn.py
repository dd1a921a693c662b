"""A k-nearest-neighbour probe: cosine similarity, majority vote.

A query's ``k`` most similar reference rows (cosine similarity) vote with their
classes; the class with the most votes wins, a tie going to the class whose voters are
the more similar in sum (then to the lower class index). The vote share of class 1 is
the score that ROC-AUC ranks.

>>> import torch
>>> reference = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
>>> classes = torch.tensor([0, 0, 1])
>>> knn_predict(reference, classes, torch.tensor([[1.0, 0.2]]), k=1, num_classes=2)[0].tolist()
[0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DEFAULT_K_GRID: tuple[int, ...] = (1, 5, 10, 20, 50, 100)
"""Neighbour counts tried on the validation split."""
QUERY_BATCH = 1024


def neighbours(
    reference: torch.Tensor, queries: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[Q, k]`` indices into ``reference`` (``[R, d]``) of each query's ``k`` most
    cosine-similar rows, most similar first, and their similarities (``[Q, k]``)."""
    if not 1 <= k <= reference.shape[0]:
        raise ValueError(f"k must be in 1..{reference.shape[0]} (the reference rows), got {k}")
    ref = F.normalize(reference.double(), dim=1)
    found_index, found_sim = [], []
    for start in range(0, queries.shape[0], QUERY_BATCH):
        block = F.normalize(queries[start : start + QUERY_BATCH].double(), dim=1)
        similarity, index = torch.topk(block @ ref.T, k, dim=1)
        found_index.append(index)
        found_sim.append(similarity)
    if not found_index:
        return torch.empty(0, k, dtype=torch.long), torch.empty(0, k, dtype=torch.float64)
    return torch.cat(found_index), torch.cat(found_sim)


def vote(
    index: torch.Tensor, similarity: torch.Tensor, classes: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (``[Q]``) and vote shares (``[Q, C]``) of the neighbours
    ``index`` (``[Q, k]``, rows of ``classes``) with their ``similarity`` (``[Q, k]``)."""
    queries, k = index.shape
    voter = classes[index]  # [Q, k]
    counts = torch.zeros(queries, num_classes, dtype=torch.float64)
    counts.scatter_add_(1, voter, torch.ones_like(similarity, dtype=torch.float64))
    summed = torch.zeros(queries, num_classes, dtype=torch.float64)
    summed.scatter_add_(1, voter, similarity.double())
    # counts first, then summed similarity (in [-k, k], so summed + k < 2k + 1)
    key = counts * (2 * k + 1) + (summed + k) * (counts > 0)
    return key.argmax(dim=1), counts / k


def knn_predict(
    reference: torch.Tensor,
    classes: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (``[Q]``) and vote shares (``[Q, C]``) of ``queries`` by their
    ``k`` nearest ``reference`` rows (labelled ``classes``)."""
    index, similarity = neighbours(reference, queries, k)
    return vote(index, similarity, classes.long(), num_classes)


def select_k(
    reference: torch.Tensor,
    classes: torch.Tensor,
    queries: torch.Tensor,
    truth: torch.Tensor,
    num_classes: int,
    grid: Sequence[int] = DEFAULT_K_GRID,
) -> tuple[int, dict[int, float]]:
    """The ``k`` of ``grid`` (capped at the reference rows) with the best accuracy on
    ``queries`` (ties: the smaller ``k``), and the accuracy of every ``k`` tried."""
    usable = sorted({min(int(k), reference.shape[0]) for k in grid if int(k) >= 1})
    if not usable:
        raise ValueError("the k grid holds no k >= 1")
    index, similarity = neighbours(reference, queries, usable[-1])
    scores: dict[int, float] = {}
    for k in usable:
        predicted, _ = vote(index[:, :k], similarity[:, :k], classes.long(), num_classes)
        scores[k] = float((predicted == truth.long()).double().mean())
    best = max(usable, key=lambda k: (scores[k], -k))
    return best, scores


__all__ = ["DEFAULT_K_GRID", "knn_predict", "neighbours", "select_k", "vote"]
