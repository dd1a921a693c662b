"""Symmetric negative cosine similarity with stop-gradient (CLUE Eq. 4-7, SimSiam)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor, stop_gradient: bool = True) -> torch.Tensor:
    """Eq. 4/6: ``D(p, z) = -mean_b cos(p_b, sg(z_b))``. ``p``, ``z``: ``[B, k]``."""
    target = z.detach() if stop_gradient else z
    return -F.cosine_similarity(p, target, dim=-1).mean()


def symmetric_negative_cosine(
    p1: torch.Tensor,
    z1: torch.Tensor,
    p2: torch.Tensor,
    z2: torch.Tensor,
    stop_gradient: bool = True,
) -> torch.Tensor:
    """Eq. 7: ``1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1))``; minimum -1."""
    return 0.5 * negative_cosine(p1, z2, stop_gradient) + 0.5 * negative_cosine(
        p2, z1, stop_gradient
    )
