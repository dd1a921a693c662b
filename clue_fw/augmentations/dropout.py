"""The implicit view: the unchanged sequence, encoded with a fresh dropout mask.

CLUE Sec. IV-B-2 (after SimCSE): the same sequence goes through the encoder twice
in training mode; the two views differ only through independent dropout masks in
the backbone. Strength is the backbone's own ``dropout`` setting.
"""

from __future__ import annotations

from typing import Literal

import torch

from clue_fw.components import Augmentation, AugmentationSpec, BuildContext


class DropoutView(Augmentation):
    """Identity on the items; the backbone's dropout makes the two views differ."""

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items


class DropoutViewSpec(AugmentationSpec):
    """Implicit view: two passes through the encoder with independent dropout masks."""

    kind: Literal["dropout"] = "dropout"

    def build(self, context: BuildContext) -> DropoutView:
        return DropoutView()
