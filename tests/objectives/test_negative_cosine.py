"""Tests for clue_fw.objectives.negative_cosine (CLUE Eq. 4-7)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clue_fw.objectives.negative_cosine import negative_cosine, symmetric_negative_cosine


def views(seed: int = 0, batch: int = 6, dim: int = 5) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=generator) for _ in range(4)]


def test_negative_cosine_by_hand() -> None:
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    z = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-3.0, -4.0]])
    # cosines 1, 0, -1 -> mean 0 -> loss -0
    assert negative_cosine(p, z).item() == pytest.approx(0.0, abs=1e-7)
    assert negative_cosine(p[:1], z[:1]).item() == pytest.approx(-1.0)
    assert negative_cosine(p[2:], z[2:]).item() == pytest.approx(1.0)


def test_symmetric_under_swapping_views() -> None:
    p1, z1, p2, z2 = views()
    forward = symmetric_negative_cosine(p1, z1, p2, z2)
    swapped = symmetric_negative_cosine(p2, z2, p1, z1)
    torch.testing.assert_close(forward, swapped, rtol=0, atol=1e-7)


def test_pairs_each_prediction_with_the_other_views_target() -> None:
    p1, z1, p2, z2 = views(1)
    expected = -0.5 * F.cosine_similarity(p1, z2).mean() - 0.5 * F.cosine_similarity(p2, z1).mean()
    torch.testing.assert_close(symmetric_negative_cosine(p1, z1, p2, z2), expected)
    # pairing p1 with its own z1 would give a different value
    same_view = -0.5 * F.cosine_similarity(p1, z1).mean() - 0.5 * F.cosine_similarity(p2, z2).mean()
    assert not torch.allclose(symmetric_negative_cosine(p1, z1, p2, z2), same_view)


def test_identical_inputs_give_minus_one() -> None:
    x = views(2)[0]
    torch.testing.assert_close(symmetric_negative_cosine(x, x, x, x), torch.tensor(-1.0))
    # scale invariant: targets that are positive multiples of the predictions
    torch.testing.assert_close(
        symmetric_negative_cosine(x, 3 * x, 2 * x, 0.5 * x), torch.tensor(-1.0)
    )


def test_bounds() -> None:
    for seed in range(5):
        value = symmetric_negative_cosine(*views(seed)).item()
        assert -1.0 <= value <= 1.0
    x = views(3)[0]
    torch.testing.assert_close(symmetric_negative_cosine(x, -x, x, -x), torch.tensor(1.0))


def leaves(seed: int) -> list[torch.Tensor]:
    return [t.requires_grad_() for t in views(seed)]


def test_stop_gradient_blocks_the_target_branch() -> None:
    p1, z1, p2, z2 = leaves(4)
    symmetric_negative_cosine(p1, z1, p2, z2, stop_gradient=True).backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and p1.grad.abs().sum() > 0
    assert p2.grad is not None and p2.grad.abs().sum() > 0


def test_without_stop_gradient_the_target_branch_gets_gradient() -> None:
    p1, z1, p2, z2 = leaves(4)
    symmetric_negative_cosine(p1, z1, p2, z2, stop_gradient=False).backward()
    assert z1.grad is not None and z1.grad.abs().sum() > 0
    assert z2.grad is not None and z2.grad.abs().sum() > 0


def test_stop_gradient_does_not_change_the_value() -> None:
    a = symmetric_negative_cosine(*leaves(5), stop_gradient=True)
    b = symmetric_negative_cosine(*leaves(5), stop_gradient=False)
    assert torch.equal(a.detach(), b.detach())


def test_stop_gradient_through_shared_graph() -> None:
    # z computed from a parameter: with stop-gradient, only the p path reaches it
    weight = torch.randn(5, 5, requires_grad=True)
    x1, x2 = views(6)[:2]
    z1, z2 = x1 @ weight, x2 @ weight
    p1, p2 = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
    symmetric_negative_cosine(p1, z1, p2, z2, stop_gradient=True).backward()
    assert weight.grad is None
