"""The implicit view: the unchanged sequence, encoded with a fresh dropout mask.

CLUE Sec. IV-B-2 (after SimCSE): the same sequence goes through the encoder twice
in training mode; the two views differ only through independent dropout masks in
the backbone. Strength is the backbone's own ``dropout`` setting.

A view's ``probability`` is the chance that it changes a given sequence; this view
never changes the items (the dropout happens in the backbone, on every pass), so any
probability below 1 would be silently ignored and is refused.

Example (a view maps a ``[B, n]`` batch of item ids to a changed batch of the same shape):

>>> import torch
>>> from clue_fw.augmentations.specs import DropoutViewSpec
>>> from clue_fw.specs import BuildContext
>>> view = DropoutViewSpec().build(BuildContext(num_items=50, max_len=8))
>>> items = torch.randint(1, 51, (4, 8))
>>> tuple(view(items, torch.Generator().manual_seed(0)).shape)
(4, 8)
"""

from __future__ import annotations

import torch

from clue_fw.augmentations.specs import DropoutViewSpec as DropoutViewSpec
from clue_fw.components import Augmentation


class DropoutView(Augmentation):
    """Identity on the items; the backbone's dropout makes the two views differ."""

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items
