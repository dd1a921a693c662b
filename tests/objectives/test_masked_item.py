"""Masked-item (cloze) pre-training: which positions are masked and what is predicted."""

from __future__ import annotations

import torch
from torch import nn

from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.objectives.masked_item import MaskedItemSpec, cloze_mask

ITEMS = torch.tensor([[0, 0, 0, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7], [0, 0, 0, 0, 0]])


def test_cloze_mask_touches_only_real_items_and_at_least_one_per_row() -> None:
    for seed in range(20):
        masked = cloze_mask(ITEMS, 0.3, torch.Generator().manual_seed(seed))
        assert not bool((masked & (ITEMS == 0)).any())
        assert bool(masked[:3].any(dim=1).all())
        assert not bool(masked[3].any())


def test_cloze_mask_rate_follows_rho() -> None:
    items = torch.arange(1, 1 + 200 * 50).view(200, 50)
    masked = cloze_mask(items, 0.2, torch.Generator().manual_seed(0))
    assert abs(float(masked.float().mean()) - 0.2) < 0.02


def test_masked_item_loss_is_near_log_catalogue_at_init_and_learns() -> None:
    context = BuildContext(num_items=20, max_len=5)
    torch.manual_seed(0)
    encoder = TransformerSpec(dim=16, heads=2, dropout=0.0).build(context)
    objective = MaskedItemSpec(rho=0.5).build(context, encoder)
    view = DropoutViewSpec().build(context)
    items = torch.tensor([[1, 2, 3, 4, 5]] * 16)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    first = None
    for step in range(60):
        out = objective(encoder, items, view, torch.Generator().manual_seed(step))
        first = float(out.loss.detach()) if first is None else first
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert abs(first - torch.log(torch.tensor(20.0)).item()) < 1.0
    assert float(out.loss.detach()) < first / 2
    assert 0.0 <= float(out.terms["masked_acc"]) <= 1.0


class ZeroStates(SequenceEncoder):
    """Every state is zero, so every item scores 0: a model that knows nothing."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.dim = 4
        self.max_len = 5
        self.item_embedding = nn.Embedding(num_items + 2, self.dim)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(torch.zeros(*items.shape, self.dim), torch.zeros(len(items), 4))


def test_masked_accuracy_counts_ties_against_the_target() -> None:
    # all items tie; argmax would pick item 1, which is every masked target here
    context = BuildContext(num_items=20, max_len=5)
    objective = MaskedItemSpec(rho=0.5).build(context, ZeroStates(20))
    items = torch.ones(8, 5, dtype=torch.long)
    out = objective(ZeroStates(20), items, DropoutViewSpec().build(context), torch.Generator())
    assert float(out.terms["masked_acc"]) == 0.0
