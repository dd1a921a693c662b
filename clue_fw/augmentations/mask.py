"""The mask view: real items are replaced by ``[MASK]`` independently.

CLUE Sec. IV-B (explicit views), after CL4SRec (Xie et al., 2022, "item mask"):
each real item of a left-padded ``[B, n]`` batch becomes ``context.mask_id`` with
probability ``rho``; padding (id 0) never changes. ``rho = 0`` is the identity.

Example (a view maps a ``[B, n]`` batch of item ids to a changed batch of the same shape):

>>> import torch
>>> from clue_fw.augmentations.specs import MaskViewSpec
>>> from clue_fw.specs import BuildContext
>>> view = MaskViewSpec().build(BuildContext(num_items=50, max_len=8))
>>> items = torch.randint(1, 51, (4, 8))
>>> tuple(view(items, torch.Generator().manual_seed(0)).shape)
(4, 8)
"""

from __future__ import annotations

import torch

from clue_fw.augmentations.specs import MaskViewSpec as MaskViewSpec
from clue_fw.components import Augmentation


class MaskView(Augmentation):
    """Replace each real item of ``items`` ``[B, n]`` by ``mask_id`` with probability ``rho``."""

    def __init__(self, rho: float, mask_id: int) -> None:
        super().__init__()
        if not 0.0 <= rho <= 1.0:
            raise ValueError(
                f"mask view: rho must be in [0, 1] (fraction of items masked), got {rho}"
            )
        self.rho = rho
        self.mask_id = mask_id

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        draws = torch.rand(items.shape, generator=generator, device=items.device)
        hit = (items != 0) & (draws < self.rho)
        return items.masked_fill(hit, self.mask_id)
