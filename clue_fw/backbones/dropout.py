"""Dropout that is cheap on the CPU, for the backbones' many dropout sites.

PyTorch's CPU dropout draws its mask with ``bernoulli_``, which on a 2-core x86 machine
costs over three times what drawing uniform numbers with ``rand`` and comparing them costs
(forward and backward over ``[512, 31, 256]``: 58.7 ms against 17.3 ms). With dropout on
the embeddings, the attention probabilities, the feed-forward layer and both residuals of
every block, that draw was 49% of a CLUE pre-training epoch's operator time and 22% of a
fine-tuning epoch's in ``recipes/ml30_dropout_cpu.yaml`` (``benchmarks/cpu_step_profile.py``,
torch 2.13.0+cpu). The functions here draw the same distribution (each element kept with
probability ``1 - p`` and scaled by ``1 / (1 - p)``) from ``rand`` on the CPU, and leave
every other device to PyTorch's fused kernels, which are fast already.

The mask comes from the same global generator either way, so seeded runs stay
reproducible; they draw different masks from those of ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the mask drawn by ``rand`` on the CPU."""
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    keep = torch.rand(x.shape, dtype=torch.float32, device=x.device).ge_(p)
    return x * keep.mul_(1.0 / (1.0 - p)).to(x.dtype)


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` whose CPU mask is drawn by :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor,
    dropout_p: float,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)``.

    With dropout on the CPU, PyTorch's kernel falls back to the plain computation, with
    its slow mask; this is the same computation with :func:`dropout`'s mask. ``allowed``
    is a boolean mask broadcastable to ``[..., L, S]``; every query row must allow at
    least one key (a row with none would be NaN, as it is in PyTorch's kernel).
    """
    if dropout_p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = dropout(torch.softmax(scores, dim=-1), dropout_p, True)
    return weights @ v
