"""Variance and covariance terms that keep a batch of vectors from collapsing (VICReg).

Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022, Eq. 1-4:

* **variance**: ``mean_j relu(target - sqrt(Var(x_j) + eps))``: a hinge on the standard
  deviation of every dimension over the batch, 0 once each dimension spreads by ``target``;
* **covariance**: ``sum_{i != j} C(x)_ij^2 / d`` with ``C`` the batch covariance matrix:
  0 when the dimensions are uncorrelated, so that no two of them carry the same signal.

>>> import torch
>>> x = torch.randn(512, 8) * 2.0
>>> variance, covariance = variance_covariance(x)
>>> float(variance) == 0.0               # every dimension spreads by more than 1
True
>>> round(variance_covariance(torch.ones(4, 8))[0].item(), 2)   # identical rows: 1 - sqrt(eps)
0.99
"""

from __future__ import annotations

import torch


def variance_covariance(
    x: torch.Tensor, target: float = 1.0, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (variance, covariance) terms of ``x`` (``[B, d]``, B >= 2), each a scalar."""
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a [B, d] batch with B >= 2, got shape {tuple(x.shape)}")
    centred = x - x.mean(dim=0)
    std = torch.sqrt(centred.var(dim=0) + eps)
    variance = torch.relu(target - std).mean()
    covariance = centred.T @ centred / (x.shape[0] - 1)
    off_diagonal = covariance.pow(2).sum() - covariance.diagonal().pow(2).sum()
    return variance, off_diagonal / x.shape[1]
