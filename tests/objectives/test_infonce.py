"""Tests for clue_fw.objectives.infonce: NT-Xent between two views, in-batch negatives."""

from __future__ import annotations

import math

import pytest
import torch

from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext
from clue_fw.objectives.infonce import InfoNceSpec, nt_xent

CONTEXT = BuildContext(num_items=30, max_len=8)


def test_loss_matches_a_hand_computed_cross_entropy() -> None:
    first = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    second = torch.tensor([[0.5, 0.5], [1.0, 1.0]])
    loss, _ = nt_xent(first, second, temperature=0.5, similarity="dot")
    rows = torch.cat([first, second])
    expected = 0.0
    for row, partner in enumerate([2, 3, 0, 1]):
        logits = [(rows[row] @ rows[other]).item() / 0.5 for other in range(4) if other != row]
        target = (rows[row] @ rows[partner]).item() / 0.5
        expected += -(target - math.log(sum(math.exp(v) for v in logits)))
    assert loss.item() == pytest.approx(expected / 4, rel=1e-6)


def test_identical_well_separated_views_give_near_zero_loss_and_full_accuracy() -> None:
    rows = torch.eye(6) * 10
    loss, accuracy = nt_xent(rows, rows.clone(), temperature=1.0, similarity="cosine")
    # cosine similarity 1 with the partner, 0 with the others: loss log(1 + 4 e^-1) ...
    assert accuracy.item() == 1.0
    low, _ = nt_xent(rows, rows.clone(), temperature=0.05, similarity="cosine")
    assert low.item() < 1e-6 < loss.item()


def test_training_lowers_the_loss_and_the_encoder_gets_gradients() -> None:
    torch.manual_seed(0)
    encoder = TransformerSpec(dim=16, blocks=1, heads=2, dropout=0.2).build(CONTEXT)
    objective = InfoNceSpec(temperature=0.5, similarity="cosine").build(CONTEXT, encoder)
    view = DropoutViewSpec().build(CONTEXT)
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(1, 31, (16, 8), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        output = objective(encoder, items, view, generator)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert "pair_acc" in output.terms
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_spec_refuses_a_non_positive_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        InfoNceSpec(temperature=0.0)
