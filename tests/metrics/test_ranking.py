"""Tests for clue_fw.metrics.ranking against hand-computed rankings."""

from __future__ import annotations

import math

import pytest
import torch

from clue_fw.metrics.ranking import (
    finalize_sums,
    parse_metric,
    ranking_sums,
    reference_metrics,
    target_ranks,
)


def scores_with_rank(rank: int, num_items: int = 20) -> tuple[torch.Tensor, int]:
    """One row of scores whose target (item 5) has exactly ``rank - 1`` better items."""
    scores = torch.zeros(num_items)
    target = 5
    scores[target] = 0.5
    others = [i for i in range(num_items) if i != target]
    for i in others[: rank - 1]:
        scores[i] = 1.0 + i
    return scores, target


@pytest.mark.parametrize("rank", [1, 3, 10, 11, 17])
def test_target_rank_by_construction(rank: int) -> None:
    scores, target = scores_with_rank(rank)
    assert target_ranks(scores.unsqueeze(0), torch.tensor([target])).tolist() == [rank]


def test_target_ranks_by_hand() -> None:
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.3, 0.2],  # target 1: best -> rank 1
            [0.1, 0.9, 0.3, 0.2],  # target 3: below 0.9 and 0.3 -> rank 3
            [0.5, 0.5, 0.5, 0.1],  # target 2: ties count in its favour -> rank 1
            [0.7, 0.5, 0.5, 0.6],  # target 1: 0.7 and 0.6 above, tie ignored -> rank 3
            [0.0, float("-inf"), 0.2, 0.1],  # target 0: -inf below it -> rank 3
        ]
    )
    ranks = target_ranks(scores, torch.tensor([1, 3, 2, 1, 0]))
    assert ranks.tolist() == [1, 3, 1, 3, 3]


def test_ranking_sums_and_finalize_by_hand() -> None:
    ranks = torch.tensor([1, 3, 11, 10, 2])
    sums = ranking_sums(ranks, [1, 10])
    assert float(sums["count"]) == 5
    assert float(sums["recall@1"]) == 1
    assert float(sums["recall@10"]) == 4
    assert float(sums["mrr@10"]) == pytest.approx(1 + 1 / 3 + 1 / 10 + 1 / 2)
    assert float(sums["mrr@1"]) == pytest.approx(1.0)
    ndcg = 1 + 1 / math.log2(4) + 1 / math.log2(11) + 1 / math.log2(3)
    assert float(sums["ndcg@10"]) == pytest.approx(ndcg)
    metrics = finalize_sums(sums)
    assert set(metrics) == {"mrr@1", "recall@1", "ndcg@1", "mrr@10", "recall@10", "ndcg@10"}
    assert metrics["recall@10"] == pytest.approx(0.8)
    assert metrics["ndcg@10"] == pytest.approx(ndcg / 5)
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 10 + 1 / 2) / 5)


def test_rank_eleven_scores_nothing_at_ten() -> None:
    metrics = finalize_sums(ranking_sums(torch.tensor([11]), [10]))
    assert metrics == {"mrr@10": 0.0, "recall@10": 0.0, "ndcg@10": 0.0}


@pytest.mark.parametrize("rank", [1, 2, 3, 9, 10, 11, 50])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_sums_agree_with_reference(rank: int, k: int) -> None:
    metrics = finalize_sums(ranking_sums(torch.tensor([rank]), [k]))
    reference = reference_metrics(rank, k)
    for name in ("mrr", "recall", "ndcg"):
        assert metrics[f"{name}@{k}"] == pytest.approx(reference[name])


def test_sums_are_additive_over_batches() -> None:
    ranks = torch.tensor([1, 4, 2, 30, 7, 10, 11, 3])
    whole = ranking_sums(ranks, [5, 10])
    parts = [ranking_sums(ranks[:3], [5, 10]), ranking_sums(ranks[3:], [5, 10])]
    combined = {k: parts[0][k] + parts[1][k] for k in whole}
    assert finalize_sums(combined) == pytest.approx(finalize_sums(whole))


def test_parse_metric() -> None:
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric("recall@5") == ("recall", 5)
    with pytest.raises(ValueError):
        parse_metric("auc")
