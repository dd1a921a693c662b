"""Masked-item (cloze) pre-training, PeterRec / BERT4Rec style.

Sun et al., "BERT4Rec", CIKM 2019; Yuan et al., "Parameter-Efficient Transfer from
Sequential Behaviors for User Modeling and Recommendation" (PeterRec), SIGIR 2020.

A proportion ``rho`` of the real items of each sequence is replaced by ``[MASK]``
and the encoder's state at each masked position predicts the original item with a
softmax over all items, scored against the backbone's item embeddings. Every row
gets at least one masked item (its most recent one when the draw masks none).

**Context with causal backbones.** clue_fw's backbones are causal: the state at
position t sees the items before t and the ``[MASK]`` token at t, never the items
after it. On them this objective is a noisy left-to-right cloze: each masked item
is predicted from its (partly masked) past, as in PeterRec's pre-training on the
causal NextItNet. A bidirectional backbone registered by a plugin would see both
sides, as BERT4Rec does; the objective itself is unchanged.

The ``views`` of the recipe are not used: masking is this objective's own corruption.

``loss: sampled`` (:mod:`clue_fw.item_softmax`) scores each masked item against in-batch
targets and sampled negatives instead of the whole catalogue; it logs no accuracy.

The logged ``masked_acc`` counts a masked item as predicted only when it scores
strictly above every other item: ties count against it, as in evaluation
(:mod:`clue_fw.metrics.ranking`). A NaN score makes the loss NaN, which the training
loop refuses.

Example (one pre-training step's loss on a batch, through an encoder and a view):

>>> import torch
>>> from clue_fw.augmentations.specs import MaskViewSpec
>>> from clue_fw.backbones.specs import GRUSpec
>>> from clue_fw.objectives.specs import MaskedItemSpec
>>> from clue_fw.specs import BuildContext
>>> context = BuildContext(num_items=50, max_len=8)
>>> encoder = GRUSpec(dim=16).build(context)
>>> objective = MaskedItemSpec().build(context, encoder)
>>> items, generator = torch.randint(1, 51, (4, 8)), torch.Generator().manual_seed(0)
>>> out = objective(encoder, items, MaskViewSpec().build(context), generator)
>>> out.loss.dim(), sorted(out.terms)
(0, ['masked_acc'])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clue_fw.components import (
    Augmentation,
    LossOutput,
    PretrainObjective,
    SequenceEncoder,
)
from clue_fw.item_softmax import ItemLoss
from clue_fw.metrics.ranking import target_ranks
from clue_fw.objectives.specs import MaskedItemSpec as MaskedItemSpec


def cloze_mask(items: torch.Tensor, rho: float, generator: torch.Generator) -> torch.Tensor:
    """``[B, n]`` boolean: which real items to mask; at least one per non-empty row."""
    real = items != 0
    draw = torch.rand(items.shape, generator=generator, device=items.device) < rho
    masked = draw & real
    nothing = ~masked.any(dim=1) & real.any(dim=1)
    masked[:, -1] |= nothing  # left padding: the last column is the most recent item
    return masked


class MaskedItemObjective(PretrainObjective):
    def __init__(
        self, num_items: int, mask_id: int, rho: float, item_loss: ItemLoss | None = None
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.mask_id = mask_id
        self.rho = rho
        self.item_loss = item_loss or ItemLoss("full", num_items, None)

    def forward(
        self,
        encoder: SequenceEncoder,
        items: torch.Tensor,
        view: Augmentation,
        generator: torch.Generator,
    ) -> LossOutput:
        masked = cloze_mask(items, self.rho, generator)
        corrupted = torch.where(masked, torch.full_like(items, self.mask_id), items)
        if self.item_loss.kind == "sampled":
            # Every position, with the unmasked ones' targets 0 (ignored): no boolean
            # indexing, whose size would need a host sync. No accuracy: it would be
            # among the sampled candidates only.
            states = encoder(corrupted).states
            targets = torch.where(masked, items, torch.zeros_like(items))
            weight = encoder.item_embedding.weight
            loss = self.item_loss(states.reshape(-1, states.shape[-1]), targets.reshape(-1), weight)
            return LossOutput(loss, {})
        states = encoder(corrupted).states[masked]
        weight = encoder.item_embedding.weight[: self.num_items + 1]
        logits = states @ weight.T
        logits[:, 0] = float("-inf")
        loss = F.cross_entropy(logits, items[masked])
        with torch.no_grad():
            # top-1 only when strictly above every other item: ties count against it
            ranks = target_ranks(logits, items[masked], ties="pessimistic")
            accuracy = (ranks == 1.0).float().mean()
        return LossOutput(loss, {"masked_acc": accuracy})
