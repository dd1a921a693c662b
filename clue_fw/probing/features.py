"""Baseline features of the items a user vector is read from: a tf-idf bag and its SVD.

A frozen encoder turns each user's ``max_len`` most recent items (the window that
evaluation feeds it) into a vector. The bag of those very items, with no order and no
training, is the baseline a representation has to beat: if a linear probe does better
on the bag than on the encoder's vectors, pre-training lost information.

* :func:`tfidf_bag`: ``[U, I]`` float64, row ``u`` the tf-idf of the items of window
  ``u`` (``tf`` the count, ``idf = ln((1 + U) / (1 + df)) + 1`` as scikit-learn's
  smoothed idf, ``df`` the windows holding the item), each row L2-normalised.
* :func:`truncated_svd`: the ``[U, r]`` projection of that matrix on its ``r`` leading
  right singular vectors (``U_r S_r``, as scikit-learn's ``TruncatedSVD``: no centring),
  by :func:`torch.svd_lowrank`, seeded.

Both are label-free, so they are fitted on every user, as pre-training sees every user.

>>> import torch
>>> bag = tfidf_bag(torch.tensor([[0, 1, 2], [1, 1, 3]]), num_items=3)
>>> bag.shape, round(float(bag[0].norm()), 6)
(torch.Size([2, 3]), 1.0)
"""

from __future__ import annotations

import torch


def item_counts(windows: torch.Tensor, num_items: int) -> torch.Tensor:
    """``[U, I]`` float64 counts of items ``1..num_items`` in each window (``[U, n]``,
    0 is padding); column ``j`` counts item ``j + 1``."""
    if windows.dim() != 2:
        raise ValueError(f"windows must be [U, n], got shape {tuple(windows.shape)}")
    users = windows.shape[0]
    counts = torch.zeros(users, num_items + 1, dtype=torch.float64)
    counts.scatter_add_(1, windows.long(), torch.ones(windows.shape, dtype=torch.float64))
    return counts[:, 1:].contiguous()


def tfidf_bag(windows: torch.Tensor, num_items: int) -> torch.Tensor:
    """The L2-normalised tf-idf rows of the items in ``windows`` (see the module doc)."""
    counts = item_counts(windows, num_items)
    users = counts.shape[0]
    document_frequency = (counts > 0).sum(dim=0).double()
    idf = torch.log((1 + users) / (1 + document_frequency)) + 1
    tfidf = counts * idf
    norm = tfidf.norm(dim=1, keepdim=True)
    return tfidf / torch.where(norm > 0, norm, torch.ones_like(norm))


def truncated_svd(matrix: torch.Tensor, rank: int, seed: int = 0) -> torch.Tensor:
    """``[U, rank]``: ``matrix`` (``[U, I]``) projected on its ``rank`` leading right
    singular vectors, computed by a seeded randomised SVD (exact for small matrices)."""
    if not 1 <= rank <= min(matrix.shape):
        raise ValueError(f"rank must be in 1..{min(matrix.shape)}, got {rank}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        oversampled = min(rank + 10, min(matrix.shape))
        _, _, v = torch.svd_lowrank(matrix.double(), q=oversampled, niter=6)
    return matrix.double() @ v[:, :rank]


def svd_rank(dim: int, matrix_shape: tuple[int, int]) -> int:
    """The rank of the SVD baseline: the encoder's width, capped by the matrix."""
    return max(1, min(dim, *matrix_shape))


__all__ = ["item_counts", "svd_rank", "tfidf_bag", "truncated_svd"]
