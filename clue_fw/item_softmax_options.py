"""The recipe fields that choose an item softmax (:mod:`clue_fw.item_softmax`): full or
sampled, the negatives, the sampler, in-batch targets, the temperature.

A mixin of the specs that predict items (``next_item``, ``masked_item``), free of torch
so that specs import it without torch; :mod:`clue_fw.item_softmax` builds the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, model_validator

from clue_fw.memory import Part, logits_part

if TYPE_CHECKING:
    import torch

    from clue_fw.item_softmax import ItemLoss

SoftmaxLoss = Literal["full", "sampled"]
Sampler = Literal["uniform", "popularity"]


class ItemSoftmaxOptions(BaseModel):
    """The recipe fields that choose a component's item softmax (a mixin of specs)."""

    loss: SoftmaxLoss = Field(
        "full",
        description="'full': softmax over every item (exact; cost grows with the catalogue); "
        "'sampled': in-batch targets plus `negatives` sampled items, logQ-corrected "
        "(for large catalogues; see docs/scale.md).",
    )
    negatives: int = Field(
        256,
        ge=0,
        le=1_000_000,
        description="Sampled softmax: items drawn per batch as extra negatives.",
    )
    sampler: Sampler = Field(
        "uniform",
        description="Sampled softmax: draw negatives 'uniform' over items or by 'popularity'.",
    )
    in_batch: bool = Field(
        True, description="Sampled softmax: every target in the batch is a negative too."
    )
    temperature: float = Field(
        1.0, gt=0.0, le=100.0, description="Scores are divided by this before the softmax."
    )

    @model_validator(mode="after")
    def _some_negatives(self) -> ItemSoftmaxOptions:
        if self.loss == "sampled" and not self.in_batch and self.negatives == 0:
            raise ValueError(
                "loss: sampled with in_batch: false and negatives: 0 has no negative to "
                "score the target against; set negatives above 0 or in_batch: true"
            )
        return self

    def logits_part(
        self, what: str, rows: int, num_items: int, fields: tuple[str, ...], prefix: str
    ) -> Part:
        """The memory of the loss's logits for ``rows`` predictions: every item (full), or
        the target, the in-batch targets and the sampled negatives (sampled). ``prefix``
        is where the options sit in a recipe (``finetune.head``), for advice."""
        if self.loss == "full":
            return logits_part(what, rows, num_items + 1, (*fields, f"{prefix}.loss (sampled)"))
        columns = 1 + (rows if self.in_batch else 0) + self.negatives
        extra = (f"{prefix}.in_batch (false)",) if self.in_batch else (f"{prefix}.negatives",)
        return logits_part(f"sampled {what}", rows, columns, (*fields, *extra), "candidates")

    def item_loss(self, num_items: int, item_counts: torch.Tensor | None) -> ItemLoss:
        """The loss these options describe, for a catalogue of ``num_items`` items."""
        from clue_fw.item_softmax import ItemLoss

        return ItemLoss(
            self.loss,
            num_items,
            item_counts,
            negatives=self.negatives,
            sampler=self.sampler,
            in_batch=self.in_batch,
            temperature=self.temperature,
        )
