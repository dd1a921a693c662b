"""tf-idf bag of items and its truncated SVD against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from clue_fw.probing.features import item_counts, svd_rank, tfidf_bag, truncated_svd

# Two windows over items 1..3 (0 is padding).
WINDOWS = torch.tensor([[0, 1, 1, 2], [0, 0, 2, 3]])


def test_counts_skip_padding() -> None:
    assert item_counts(WINDOWS, 3).tolist() == [[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]]


def test_tfidf_by_hand() -> None:
    # idf = ln((1 + 2) / (1 + df)) + 1: item 1 and 3 in one window, item 2 in both
    rare, common = math.log(3 / 2) + 1, 1.0
    first = torch.tensor([2 * rare, 1 * common, 0.0], dtype=torch.float64)
    second = torch.tensor([0.0, 1 * common, 1 * rare], dtype=torch.float64)
    expected = torch.stack([first / first.norm(), second / second.norm()])
    assert torch.allclose(tfidf_bag(WINDOWS, 3), expected)


def test_an_empty_window_stays_zero() -> None:
    assert tfidf_bag(torch.zeros(1, 3, dtype=torch.long), 2).tolist() == [[0.0, 0.0]]


def test_truncated_svd_matches_the_full_svd() -> None:
    generator = torch.Generator().manual_seed(0)
    matrix = torch.rand(30, 12, generator=generator, dtype=torch.float64)
    projected = truncated_svd(matrix, 4, seed=1)
    u, s, _ = torch.linalg.svd(matrix, full_matrices=False)
    # equal up to the sign of each singular vector
    assert torch.allclose(projected.abs(), (u[:, :4] * s[:4]).abs(), atol=1e-8)
    assert torch.equal(projected, truncated_svd(matrix, 4, seed=1))  # seeded


def test_svd_rank_is_capped() -> None:
    assert svd_rank(64, (100, 30)) == 30 and svd_rank(16, (100, 30)) == 16
    with pytest.raises(ValueError, match="rank must be in 1..12"):
        truncated_svd(torch.ones(30, 12), 13)
