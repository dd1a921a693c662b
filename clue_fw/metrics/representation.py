"""Measures of a set of representation vectors: alignment, uniformity, effective rank and
the collapse monitor. Pure functions of ``[N, d]`` tensors; each returns a Python float.

>>> import torch
>>> x = torch.eye(4)
>>> effective_rank(x)                      # orthonormal rows: every direction used
4.0
>>> alignment(x, x)                        # identical pairs
0.0

* **Alignment** and **uniformity** (Wang and Isola, "Understanding Contrastive
  Representation Learning through Alignment and Uniformity on the Hypersphere", ICML
  2020, Eq. 4-5), on L2-normalised vectors:
  ``alignment = mean_i ||x_i - y_i||^2`` over positive pairs ``(x_i, y_i)`` (alpha = 2;
  0 is perfect, 4 is antipodal) and
  ``uniformity = log mean_{i<j} exp(-2 ||x_i - x_j||^2)`` over every pair of distinct rows
  (t = 2; 0 when every vector is the same, lower is more uniform; about -4 for many
  vectors spread evenly on a high-dimensional sphere).
* **Effective rank** (Roy and Vetterli, "The effective rank: a measure of effective
  dimensionality", EUSIPCO 2007): ``exp(H(p))`` with ``p_k = s_k / sum(s)`` the normalised
  singular values of the ``[N, d]`` matrix (not centred, or centred with ``centre=True``) and
  ``H`` the Shannon entropy (natural log). 1 for vectors on one line, ``d`` for orthonormal
  (or isotropic) ones.
* **Collapse monitor** (as ``z_std`` in :mod:`clue_fw.objectives.clue`, after SimSiam,
  Chen and He, CVPR 2021, Sec. 4.1): ``mean_k std_i(z_ik) * sqrt(d)`` with ``z`` the
  L2-normalised vectors and ``std`` the unbiased per-dimension standard deviation over the
  rows. 0 for collapsed (identical) vectors; about 1 for vectors spread evenly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _matrix(x: torch.Tensor, name: str, rows: int = 1) -> torch.Tensor:
    if x.dim() != 2:
        raise ValueError(f"{name} must be a [N, d] matrix, got shape {tuple(x.shape)}")
    if x.shape[0] < rows:
        raise ValueError(f"{name} needs at least {rows} rows, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or infinite values; the vectors are broken")
    return x.detach().to(torch.float64)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (a zero row stays zero), in float64."""
    return F.normalize(_matrix(x, "x"), dim=-1)


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """``mean_i ||x_i - y_i||^alpha`` of the L2-normalised rows; ``x``, ``y``: ``[N, d]``,
    row ``i`` of each a positive pair."""
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    a, b = F.normalize(_matrix(x, "x", 1), dim=-1), F.normalize(_matrix(y, "y", 1), dim=-1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(x: torch.Tensor, t: float = 2.0, block: int = 1024) -> float:
    """``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` of the L2-normalised rows of ``x``
    (``[N, d]``, N >= 2). Exact, in blocks of ``block`` rows (memory ``block * N``)."""
    z = F.normalize(_matrix(x, "x", 2), dim=-1)
    n = z.shape[0]
    parts = []
    for start in range(0, n - 1, block):
        rows = z[start : start + block]
        # Squared distance of unit vectors: 2 - 2 cos (clamped against rounding).
        squared = (2.0 - 2.0 * rows @ z.T).clamp(min=0.0)
        index = torch.arange(start, start + rows.shape[0]).unsqueeze(1)
        upper = torch.arange(n).unsqueeze(0) > index  # pairs i < j only
        parts.append(torch.logsumexp(-t * squared[upper], dim=0).reshape(1))
    pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.cat(parts), dim=0) - math.log(pairs))


def singular_values(x: torch.Tensor) -> torch.Tensor:
    """The singular values of ``x`` (``[N, d]``, not centred), largest first, float64."""
    return torch.linalg.svdvals(_matrix(x, "x"))


def effective_rank(x: torch.Tensor, centre: bool = False) -> float:
    """``exp(-sum_k p_k log p_k)``, ``p = s / sum(s)`` over the singular values ``s`` of
    ``x`` (``[N, d]``): between 1 and ``min(N, d)``. ``centre``: of ``x`` minus its column
    means, so that a direction every row shares does not count (the spectrum of the rows'
    differences, which dimensional collapse shrinks)."""
    matrix = _matrix(x, "x")
    if centre:
        matrix = matrix - matrix.mean(dim=0, keepdim=True)
    s = singular_values(matrix)
    total = s.sum()
    if float(total) == 0.0:
        raise ValueError(
            "x is all zeros"
            + (" after centring (every row is the same)" if centre else "")
            + "; its effective rank is undefined"
        )
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_std(x: torch.Tensor) -> float:
    """``mean_k std_i(z_ik) * sqrt(d)`` of the L2-normalised rows ``z`` of ``x``
    (``[N, d]``, N >= 2): CLUE's ``z_std`` collapse monitor."""
    z = F.normalize(_matrix(x, "x", 2), dim=-1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[1]))


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """The rows of ``x`` (``[N, d]``) projected on their first two principal components
    (``[N, 2]``, float32) and the share of the variance each explains."""
    centred = _matrix(x, "x", 2)
    centred = centred - centred.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(2, vh.shape[0])
    projected = centred @ vh[:k].T
    if k < 2:
        projected = torch.cat(
            [projected, torch.zeros(projected.shape[0], 2 - k, dtype=projected.dtype)], 1
        )
    variance = s.pow(2)
    total = float(variance.sum())
    shares = [float(v) / total if total > 0 else 0.0 for v in variance[:2]]
    shares += [0.0] * (2 - len(shares))
    return projected.float(), shares
