"""The Barlow Twins objective: clue_fw's objective contract, and the loss's properties."""

from __future__ import annotations

import clue_barlow
import torch

from clue_fw.testing import contract_test

test_contract = contract_test(clue_barlow)


def test_loss_is_symmetric_in_the_two_views() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 5, generator=generator), torch.randn(8, 5, generator=generator)
    torch.testing.assert_close(
        clue_barlow.barlow_twins_loss(a, b, 0.01).loss,
        clue_barlow.barlow_twins_loss(b, a, 0.01).loss,
    )


def test_identical_decorrelated_views_cost_nothing_and_collapse_costs_most() -> None:
    # Two standardised, uncorrelated columns: C is the identity.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert clue_barlow.barlow_twins_loss(z, z, 0.5).loss.item() < 1e-6
    # Both columns the same (redundant): the off-diagonal term is 2 (C_12 = C_21 = 1).
    redundant = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]])
    terms = clue_barlow.barlow_twins_loss(redundant, redundant, 0.5)
    torch.testing.assert_close(terms.off_diagonal, torch.tensor(2.0), atol=1e-4, rtol=0)
