"""The crop view: remove a contiguous part of each sequence and re-pack it.

CLUE Sec. IV-B: "select a continuous sub-sequence and drop it off" (``mode="drop"``,
the default). CL4SRec (Xie et al., 2022, "item crop") keeps a contiguous span
instead (``mode="keep"``).

Exact rule, per row with ``L`` real items: ``k = min(floor(rho * L), L - 1)`` items
are removed (``rho`` read to 6 decimals; at least one item is always kept, and an
empty row stays empty).

* ``drop``: a contiguous span of ``k`` items, starting uniformly at random, is removed.
* ``keep``: a contiguous span of ``L - k`` items, starting uniformly at random, is kept;
  the ``k`` removed items are split between the two ends. CL4SRec's crop ratio
  ``eta`` (the fraction kept) is ``rho = 1 - eta`` here, so that in every view ``rho``
  is the strength and ``rho = 0`` is the identity.

The remaining items keep their order and are re-packed to the right, so the result
is left-padded like the input.

Example (a view maps a ``[B, n]`` batch of item ids to a changed batch of the same shape):

>>> import torch
>>> from clue_fw.augmentations.specs import CropViewSpec
>>> from clue_fw.specs import BuildContext
>>> view = CropViewSpec().build(BuildContext(num_items=50, max_len=8))
>>> items = torch.randint(1, 51, (4, 8))
>>> tuple(view(items, torch.Generator().manual_seed(0)).shape)
(4, 8)
"""

from __future__ import annotations

import torch

from clue_fw.augmentations.rows import floor_fraction, left_pack, random_span
from clue_fw.augmentations.specs import CropViewSpec as CropViewSpec
from clue_fw.components import Augmentation


class CropView(Augmentation):
    """Remove ``min(floor(rho * L), L - 1)`` items of each row of ``items`` ``[B, n]``."""

    def __init__(self, rho: float, mode: str = "drop") -> None:
        super().__init__()
        if not 0.0 <= rho <= 1.0:
            raise ValueError(
                f"crop view: rho must be in [0, 1] (fraction of items removed), got {rho}"
            )
        if mode not in ("drop", "keep"):
            raise ValueError(f"crop view: mode must be 'drop' or 'keep', got {mode!r}")
        self.rho = rho
        self.mode = mode

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        real = items != 0
        lengths = real.sum(dim=1)  # [B]
        removed = floor_fraction(lengths, self.rho)
        removed = torch.minimum(removed, (lengths - 1).clamp(min=0))
        span = removed if self.mode == "drop" else lengths - removed
        _, in_span = random_span(lengths, span, items.shape[1], generator)
        keep = real & ~in_span if self.mode == "drop" else real & in_span
        return left_pack(items, keep)
