"""Example third-party plugin: the ``reverse`` view, registered through clue_fw's hooks.

Per row with ``L`` real items, a contiguous span of ``k = floor(rho * L)`` items
(``rho`` read to 6 decimals), starting uniformly at random, is put in reverse order.
Items outside the span and padding stay where they are, so the view keeps padding
and each row's items; ``rho = 0`` is the identity and ``rho = 1`` reverses the whole
sequence. It is the deterministic cousin of CL4SRec's "item reorder" (Xie et al.,
"Contrastive Learning for Sequential Recommendation", ICDE 2022), which shuffles the
span (clue_fw's built-in ``permute``).

    >>> import torch
    >>> view = ReverseViewSpec(rho=1.0).build(BuildContext(num_items=9, max_len=5))
    >>> view(torch.tensor([[0, 0, 1, 2, 3]]), torch.Generator().manual_seed(0)).tolist()
    [[0, 0, 3, 2, 1]]

A recipe uses it as ``pretrain.views: [{kind: reverse, rho: 0.5, probability: 0.8}]``;
``probability`` (the chance that the view changes a given sequence) is applied by
clue_fw around the view.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from clue_fw.components import Augmentation, AugmentationSpec, BuildContext
from clue_fw.hookspecs import hookimpl

_RHO_SCALE = 1_000_000


class ReverseView(Augmentation):
    """Reverse a random span of ``floor(rho * L)`` items in each row of ``items`` ``[B, n]``."""

    def __init__(self, rho: float) -> None:
        super().__init__()
        if not 0.0 <= rho <= 1.0:
            raise ValueError(
                f"reverse view: rho must be in [0, 1] (fraction of items reversed), got {rho}"
            )
        self.rho = rho

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = items.shape[1]
        lengths = (items != 0).sum(dim=1)  # [B]
        span = lengths * round(self.rho * _RHO_SCALE) // _RHO_SCALE
        choices = lengths - span + 1  # possible first positions of the span
        draws = torch.rand(lengths.shape, generator=generator, device=items.device)
        first = n - lengths + torch.minimum((draws * choices).long(), choices - 1)  # [B]
        position = torch.arange(n, device=items.device).expand_as(items)  # [B, n]
        last = (first + span - 1).unsqueeze(1)
        inside = (position >= first.unsqueeze(1)) & (position <= last)
        # Inside the span, position p reads its mirror image first + last - p.
        source = torch.where(inside, first.unsqueeze(1) + last - position, position)
        return items.gather(1, source)


class ReverseViewSpec(AugmentationSpec):
    """Explicit view: reverse a random span covering rho of the items (example plugin)."""

    kind: Literal["reverse"] = "reverse"
    rho: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Fraction of each sequence's items in the reversed span: floor(rho * L).",
    )

    def build(self, context: BuildContext) -> ReverseView:
        return ReverseView(self.rho)


@hookimpl
def clue_register_augmentations() -> list[type[AugmentationSpec]]:
    return [ReverseViewSpec]
