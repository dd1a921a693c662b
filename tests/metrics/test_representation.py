"""Each representation measure against a value computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from clue_fw.metrics.representation import (
    alignment,
    collapse_std,
    effective_rank,
    pca_2d,
    uniformity,
)


def test_identical_vectors_align_perfectly_have_rank_one_and_are_collapsed() -> None:
    x = torch.tensor([[3.0, 4.0]] * 5)
    assert alignment(x, x.clone()) == 0.0
    assert effective_rank(x) == pytest.approx(1.0)
    assert collapse_std(x) == 0.0
    assert uniformity(x) == pytest.approx(0.0)  # log mean exp(0)


def test_orthonormal_vectors() -> None:
    d = 4
    x = torch.eye(d)
    assert effective_rank(x) == pytest.approx(d)  # s = (1, 1, 1, 1): exp(log 4)
    # Every pair is at squared distance 2: log exp(-2 * 2) = -4.
    assert uniformity(x) == pytest.approx(-4.0)
    # One 1 and three 0 per column: unbiased std 0.5, times sqrt(4).
    assert collapse_std(x) == pytest.approx(1.0)


def test_alignment_is_the_mean_squared_distance_of_normalised_pairs() -> None:
    x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[0.0, 5.0], [0.0, 3.0]])  # a right angle (||.||^2 = 2), then equal
    assert alignment(x, y) == pytest.approx(1.0)
    assert alignment(x, -x) == pytest.approx(4.0)  # antipodal pairs
    assert alignment(x, y) == pytest.approx(alignment(y, x))  # symmetric


def test_effective_rank_of_known_singular_values() -> None:
    x = torch.diag(torch.tensor([3.0, 1.0]))  # p = (3/4, 1/4)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(x) == pytest.approx(math.exp(entropy))


def test_uniformity_of_two_points_and_its_blocks() -> None:
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # squared distance 0.4^2 + 0.8^2 = 0.8
    assert uniformity(x) == pytest.approx(-1.6)
    many = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    assert uniformity(many, block=7) == pytest.approx(uniformity(many))
    assert uniformity(many) == pytest.approx(uniformity(many * 5.0))  # scale-free


def test_pca_finds_the_spread_direction() -> None:
    x = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    points, shares = pca_2d(x)
    assert points.shape == (4, 2)
    assert shares[0] == pytest.approx(1.0) and shares[1] == pytest.approx(0.0, abs=1e-12)
    assert points[:, 0].abs().tolist() == pytest.approx([1.0, 1.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: alignment(torch.ones(2, 3), torch.ones(3, 3)), "same shape"),
        (lambda: uniformity(torch.ones(1, 3)), "at least 2 rows"),
        (lambda: effective_rank(torch.zeros(3, 3)), "all zeros"),
        (lambda: collapse_std(torch.tensor([[1.0, float("nan")]] * 2)), "NaN"),
        (lambda: effective_rank(torch.ones(3)), "[N, d]"),
    ],
)
def test_bad_inputs_say_what_is_wrong(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()  # type: ignore[operator]
