"""Compose views: each is applied to each sequence with its own probability."""

from __future__ import annotations

import torch
from torch import nn

from clue_fw.components import Augmentation, AugmentationSpec, BuildContext


class ViewPipeline(Augmentation):
    """Apply ``views`` in order; view ``i`` changes a given row with ``probabilities[i]``.

    Each call draws fresh randomness from the generator, so two calls on the same
    batch (the two branches of a positive pair) are independent.
    """

    def __init__(self, views: list[Augmentation], probabilities: list[float]) -> None:
        super().__init__()
        if len(views) != len(probabilities):
            raise ValueError("one probability per view")
        self.views = nn.ModuleList(views)
        self.probabilities = list(probabilities)

    @classmethod
    def from_specs(cls, specs: list[AugmentationSpec], context: BuildContext) -> ViewPipeline:
        """The pipeline a recipe's ``pretrain.views`` list describes."""
        return cls([spec.build(context) for spec in specs], [spec.probability for spec in specs])

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for view, probability in zip(self.views, self.probabilities, strict=True):
            if probability <= 0.0:
                continue
            changed = view(items, generator)
            if probability < 1.0:
                rows = torch.rand(items.shape[0], generator=generator, device=items.device)
                changed = torch.where((rows < probability).unsqueeze(1), changed, items)
            items = changed
        return items
