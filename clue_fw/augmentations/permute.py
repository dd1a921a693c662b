"""The permute view: shuffle a random contiguous span of each sequence.

CLUE Sec. IV-B, after CL4SRec (Xie et al., 2022, "item reorder"): per row with ``L``
real items, a contiguous span of ``k = floor(rho * L)`` items (``rho`` read to 6
decimals), starting uniformly at random, is put in a uniformly random order (argsort
of random keys). Items outside the span and padding stay where they are; spans of
fewer than two items change nothing, so ``rho = 0`` is the identity.

Example (a view maps a ``[B, n]`` batch of item ids to a changed batch of the same shape):

>>> import torch
>>> from clue_fw.augmentations.specs import PermuteViewSpec
>>> from clue_fw.specs import BuildContext
>>> view = PermuteViewSpec().build(BuildContext(num_items=50, max_len=8))
>>> items = torch.randint(1, 51, (4, 8))
>>> tuple(view(items, torch.Generator().manual_seed(0)).shape)
(4, 8)
"""

from __future__ import annotations

import torch

from clue_fw.augmentations.rows import floor_fraction, random_span
from clue_fw.augmentations.specs import PermuteViewSpec as PermuteViewSpec
from clue_fw.components import Augmentation


class PermuteView(Augmentation):
    """Shuffle a random span of ``floor(rho * L)`` items in each row of ``items`` ``[B, n]``."""

    def __init__(self, rho: float) -> None:
        super().__init__()
        if not 0.0 <= rho <= 1.0:
            raise ValueError(
                f"permute view: rho must be in [0, 1] (fraction of items shuffled), got {rho}"
            )
        self.rho = rho

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = items.shape[1]
        lengths = (items != 0).sum(dim=1)  # [B]
        span = floor_fraction(lengths, self.rho)
        first, inside = random_span(lengths, span, n, generator)
        position = torch.arange(n, device=items.device).expand_as(items)  # [B, n]
        # Sort keys: every position outside the span keeps its own index; positions inside
        # get random keys in [first, first + span - 1], so they only trade places there.
        keys = torch.rand(items.shape, generator=generator, device=items.device)
        inside_keys = first.unsqueeze(1) + keys * (span - 1).clamp(min=0).unsqueeze(1)
        keys = torch.where(inside, inside_keys, position.to(keys.dtype))
        order = torch.sort(keys, dim=1, stable=True).indices
        return items.gather(1, order)
