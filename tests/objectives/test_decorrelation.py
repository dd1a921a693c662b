"""VICReg's variance and covariance terms against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from clue_fw.objectives.decorrelation import variance_covariance


def test_hand_computed_terms() -> None:
    # Columns: a = (1, -1, 1, -1), b = (1, -1, 1, -1) (perfectly correlated), c = 0.
    x = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    variance, covariance = variance_covariance(x, eps=0.0)
    # Unbiased variance of a and b: 4 / 3, std 1.1547 (above 1: no hinge); c: std 0, hinge 1.
    assert variance.item() == pytest.approx(1.0 / 3.0)
    # cov(a, b) = 4 / 3, counted twice (ab and ba), squared, over d = 3.
    assert covariance.item() == pytest.approx(2 * (4 / 3) ** 2 / 3)


def test_uncorrelated_spread_columns_cost_nothing() -> None:
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * 2.0
    variance, covariance = variance_covariance(x)
    assert variance.item() == 0.0
    assert covariance.item() == pytest.approx(0.0, abs=1e-12)


def test_collapsed_rows_pay_the_full_hinge_and_gradients_push_them_apart() -> None:
    x = (torch.ones(6, 4) + 1e-3 * torch.randn(6, 4)).requires_grad_()
    variance, _ = variance_covariance(x)
    assert variance.item() == pytest.approx(1.0 - math.sqrt(1e-4), abs=5e-3)
    variance.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_refuses_a_single_row() -> None:
    with pytest.raises(ValueError, match="B >= 2"):
        variance_covariance(torch.ones(1, 4))
