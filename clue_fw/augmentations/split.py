"""The split view: each sequence's items are divided between the two branches.

The views of the paper (dropout, mask, crop, permute) make both branches of a positive
pair from the *same* items. A user's two branches then share every item, and an encoder
can match them by the items alone without learning which *different* items go together;
on ML-1M the user vectors this gives collapse to a few dimensions that carry no profile
signal (``docs/results.md``, "Pre-training collapse"). The split view gives each branch a disjoint
random part of the sequence instead, so that matching the two branches means predicting
one part of a user's behaviour from the other, the signal a bag-of-items SVD reads.

Exact rule, per row with ``L`` real items: when ``L >= 2``, ``k = floor(share * L)``
clamped to ``1..L - 1`` items, chosen uniformly at random, form the first part and the
other ``L - k`` the second; a row of fewer than two items goes whole to both branches.
Each part keeps the items' order and is re-packed to the right (left-padded).

As the first entry of ``pretrain.views`` it divides each sequence between the branches;
the views after it then change each part on its own. Called as a single view (the
:class:`~clue_fw.components.Augmentation` interface) it returns the first part.

Example (a view maps a ``[B, n]`` batch of item ids to a changed batch of the same shape):

>>> import torch
>>> from clue_fw.augmentations.specs import SplitViewSpec
>>> from clue_fw.specs import BuildContext
>>> view = SplitViewSpec().build(BuildContext(num_items=50, max_len=8))
>>> items = torch.randint(1, 51, (4, 8))
>>> tuple(view(items, torch.Generator().manual_seed(0)).shape)
(4, 8)
"""

from __future__ import annotations

import torch

from clue_fw.augmentations.rows import floor_fraction, left_pack
from clue_fw.augmentations.specs import SplitViewSpec as SplitViewSpec
from clue_fw.components import PairingView


class SplitView(PairingView):
    """Divide the items of each row of ``items`` ``[B, n]`` into two disjoint parts."""

    def __init__(self, share: float) -> None:
        super().__init__()
        if not 0.0 < share < 1.0:
            raise ValueError(
                f"split view: share must be in (0, 1) (fraction of each sequence's items in "
                f"the first branch), got {share}"
            )
        self.share = share

    def first_part(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, n]`` bool: the real positions of the first part; rows of fewer than two
        items are whole."""
        real = items != 0
        lengths = real.sum(dim=1)
        size = floor_fraction(lengths, self.share)
        size = torch.minimum(size.clamp(min=1), (lengths - 1).clamp(min=0))
        # A uniformly random subset of `size` real positions: the `size` smallest keys.
        keys = torch.rand(items.shape, generator=generator, device=items.device)
        keys = keys.masked_fill(~real, 2.0)
        rank = keys.argsort(dim=1).argsort(dim=1)
        first = real & (rank < size.unsqueeze(1))
        return torch.where((lengths < 2).unsqueeze(1), real, first)

    def split(
        self, items: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of every row: ``(first, second)``, each ``[B, n]`` left-padded;
        their items are disjoint and together those of the row (rows of fewer than two
        items: the row twice)."""
        real = items != 0
        first = self.first_part(items, generator)
        lengths = real.sum(dim=1, keepdim=True)
        second = torch.where(lengths < 2, real, real & ~first)
        return left_pack(items, first), left_pack(items, second)

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return left_pack(items, self.first_part(items, generator))
