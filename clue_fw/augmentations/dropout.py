"""The implicit view: the unchanged sequence, encoded with a fresh dropout mask.

CLUE Sec. IV-B-2 (after SimCSE): the same sequence goes through the encoder twice
in training mode; the two views differ only through independent dropout masks in
the backbone. Strength is the backbone's own ``dropout`` setting.

A view's ``probability`` is the chance that it changes a given sequence; this view
never changes the items (the dropout happens in the backbone, on every pass), so any
probability below 1 would be silently ignored and is refused.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import field_validator

from clue_fw.components import Augmentation, AugmentationSpec, BuildContext


class DropoutView(Augmentation):
    """Identity on the items; the backbone's dropout makes the two views differ."""

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items


class DropoutViewSpec(AugmentationSpec):
    """Implicit view: two passes through the encoder with independent dropout masks.

    It never changes the items, so its ``probability`` must stay 1.
    """

    kind: Literal["dropout"] = "dropout"

    @field_validator("probability")
    @classmethod
    def _always(cls, value: float) -> float:
        if value != 1.0:
            raise ValueError(
                "the dropout view leaves the items unchanged (the backbone's dropout makes the "
                "two branches differ on every pass), so a probability other than 1 has no "
                f"effect; got {value}. Remove `probability`, or change the backbone's `dropout`"
            )
        return value

    def build(self, context: BuildContext) -> DropoutView:
        return DropoutView()
