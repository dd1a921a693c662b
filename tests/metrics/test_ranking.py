"""Tests for clue_fw.metrics.ranking against hand-computed rankings."""

from __future__ import annotations

import math

import pytest
import torch

from clue_fw.metrics.ranking import (
    NAN_ROWS,
    expected_metric_sums,
    finalize_sums,
    parse_metric,
    ranking_sums,
    reference_metrics,
    target_ranks,
    tie_blocks,
)

INF = float("inf")


def scores_with_rank(rank: int, num_items: int = 20) -> tuple[torch.Tensor, int]:
    """One row of scores whose target (item 5) has exactly ``rank - 1`` better items."""
    scores = torch.zeros(num_items)
    target = 5
    scores[target] = 0.5
    others = [i for i in range(num_items) if i != target]
    for i in others[: rank - 1]:
        scores[i] = 1.0 + i
    return scores, target


def rank_sums(ranks: list[float], ks: list[int]) -> dict[str, torch.Tensor]:
    """Metric sums of plain ranks (blocks of size 1)."""
    first = torch.tensor(ranks, dtype=torch.float64)
    return expected_metric_sums(first, torch.ones_like(first), ks)


@pytest.mark.parametrize("ties", ["pessimistic", "average"])
@pytest.mark.parametrize("rank", [1, 3, 10, 11, 17])
def test_target_rank_by_construction(rank: int, ties: str) -> None:
    scores, target = scores_with_rank(rank)
    assert target_ranks(scores.unsqueeze(0), torch.tensor([target]), ties).tolist() == [rank]


def test_target_ranks_by_hand() -> None:
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.3, 0.2],  # target 1: best -> rank 1
            [0.1, 0.9, 0.3, 0.2],  # target 3: below 0.9 and 0.3 -> rank 3
            [0.5, 0.5, 0.5, 0.1],  # target 2: tied with two -> 3 pessimistic, 2 on average
            [0.7, 0.5, 0.5, 0.6],  # target 1: 0.7, 0.6 above, one tie -> 4 / 3.5
            [0.0, -INF, 0.2, 0.1],  # target 0: -inf below it -> rank 3
            [0.0, -INF, -INF, 0.1],  # target 1 scores -inf (excluded): a miss
        ]
    )
    target = torch.tensor([1, 3, 2, 1, 0, 1])
    assert target_ranks(scores, target).tolist() == [1, 3, 3, 4, 3, INF]
    assert target_ranks(scores, target, "average").tolist() == [1, 3, 2, 3.5, 3, INF]
    first, size = tie_blocks(scores, target, "average")
    assert first.tolist() == [1, 3, 1, 3, 3, INF]
    assert size.tolist() == [1, 1, 3, 2, 1, 1]


def test_excluded_target_is_a_miss_at_every_cutoff() -> None:
    # only three candidates, but k = 10: an excluded target must still score nothing
    scores = torch.tensor([[-INF, 1.0, 2.0, -INF], [-INF, -INF, -INF, -INF]])
    for ties in ("pessimistic", "average"):
        sums = ranking_sums(scores, torch.tensor([3, 2]), [1, 10], ties)
        assert finalize_sums(sums) == {
            f"{name}@{k}": 0.0 for k in (1, 10) for name in ("mrr", "recall", "ndcg")
        }


def test_constant_scores() -> None:
    """A model that scores all N items the same: 0 pessimistic, exactly k/N on average."""
    num_items, k = 40, 10
    scores = torch.full((7, num_items), 0.3)
    target = torch.arange(7) * 5
    pessimistic = finalize_sums(ranking_sums(scores, target, [k, 40, 100]))
    assert pessimistic["mrr@10"] == pessimistic["recall@10"] == pessimistic["ndcg@10"] == 0.0
    # rank N is last, but within k >= N
    assert pessimistic["recall@40"] == pessimistic["recall@100"] == 1.0
    assert pessimistic["mrr@40"] == pytest.approx(1 / num_items)
    average = finalize_sums(ranking_sums(scores, target, [k, 40, 100], "average"))
    assert average["recall@10"] == pytest.approx(k / num_items, abs=1e-15)
    assert average["recall@40"] == average["recall@100"] == 1.0
    harmonic = sum(1 / r for r in range(1, k + 1)) / num_items
    assert average["mrr@10"] == pytest.approx(harmonic, rel=1e-12)
    dcg = sum(1 / math.log2(r + 1) for r in range(1, k + 1)) / num_items
    assert average["ndcg@10"] == pytest.approx(dcg, rel=1e-12)


def brute_force(first: int, size: int, k: int) -> dict[str, float]:
    """The expected metrics of a rank uniform on first..first+size-1, one rank at a time."""
    ranks = range(first, first + size)
    return {
        name: sum(reference_metrics(r, k)[name] for r in ranks) / size
        for name in ("mrr", "recall", "ndcg")
    }


@pytest.mark.parametrize("first", [1, 2, 5, 9, 10, 11, 30])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 25])
def test_expected_metrics_match_brute_force(first: int, size: int) -> None:
    ks = [1, 5, 10]
    sums = expected_metric_sums(
        torch.tensor([float(first)], dtype=torch.float64), torch.tensor([float(size)]), ks
    )
    for k in ks:
        expected = brute_force(first, size, k)
        for name in ("mrr", "recall", "ndcg"):
            assert float(sums[f"{name}@{k}"]) == pytest.approx(expected[name], abs=1e-12)
        # recall is a count over the block: exact
        hits = max(0, min(first + size - 1, k) - first + 1)
        assert float(sums[f"recall@{k}"]) == hits / size


def test_average_ties_match_a_random_tie_break() -> None:
    """E[metric] under `average` equals the mean over every order of the tied items."""
    torch.manual_seed(0)
    scores = torch.randint(0, 4, (50, 12)).to(torch.float32)  # many ties
    target = torch.randint(0, 12, (50,))
    got = finalize_sums(ranking_sums(scores, target, [1, 3, 5], "average"))
    # break ties by a tiny random jitter many times; the mean converges on the expectation
    totals: dict[str, float] = {}
    draws = 2000
    generator = torch.Generator().manual_seed(1)
    for _ in range(draws):
        jitter = torch.rand(scores.shape, generator=generator) * 1e-3
        once = finalize_sums(ranking_sums(scores.double() + jitter.double(), target, [1, 3, 5]))
        for name, value in once.items():
            totals[name] = totals.get(name, 0.0) + value / draws
    for name, value in got.items():
        assert value == pytest.approx(totals[name], abs=0.01), name


def test_nan_rows_are_counted_not_ranked() -> None:
    scores = torch.tensor([[0.1, 0.2, 0.3], [0.1, float("nan"), 0.3], [float("nan")] * 3])
    sums = ranking_sums(scores, torch.tensor([2, 2, 0]), [1])
    assert float(sums[NAN_ROWS]) == 2
    assert NAN_ROWS not in finalize_sums(sums)


def test_ties_must_be_known() -> None:
    with pytest.raises(ValueError, match="ties must be"):
        target_ranks(torch.zeros(1, 3), torch.tensor([0]), "random")  # type: ignore[arg-type]


def test_expected_sums_and_finalize_by_hand() -> None:
    sums = rank_sums([1, 3, 11, 10, 2], [1, 10])
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
    metrics = finalize_sums(rank_sums([11], [10]))
    assert metrics == {"mrr@10": 0.0, "recall@10": 0.0, "ndcg@10": 0.0}


@pytest.mark.parametrize("rank", [1, 2, 3, 9, 10, 11, 50])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_sums_agree_with_reference(rank: int, k: int) -> None:
    metrics = finalize_sums(rank_sums([rank], [k]))
    reference = reference_metrics(rank, k)
    for name in ("mrr", "recall", "ndcg"):
        assert metrics[f"{name}@{k}"] == pytest.approx(reference[name])


@pytest.mark.parametrize("ties", ["pessimistic", "average"])
def test_sums_are_additive_over_batches(ties: str) -> None:
    torch.manual_seed(0)
    scores = torch.randint(0, 6, (8, 30)).float()
    target = torch.randint(0, 30, (8,))
    whole = ranking_sums(scores, target, [5, 10], ties)
    parts = [
        ranking_sums(scores[:3], target[:3], [5, 10], ties),
        ranking_sums(scores[3:], target[3:], [5, 10], ties),
    ]
    combined = {k: parts[0][k] + parts[1][k] for k in whole}
    assert finalize_sums(combined) == pytest.approx(finalize_sums(whole))


def test_parse_metric() -> None:
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric("recall@5") == ("recall", 5)
    with pytest.raises(ValueError):
        parse_metric("auc")


def test_cutoff_beyond_the_catalogue() -> None:
    """k larger than the number of items: every ranked target is a hit, and the work is
    bounded by the catalogue, not by k."""
    scores = torch.tensor([[0.3, 0.1, 0.2], [0.3, -INF, 0.2]])
    sums = ranking_sums(scores, torch.tensor([1, 1]), [10**9])
    metrics = finalize_sums(sums)
    assert metrics[f"recall@{10**9}"] == 0.5  # the excluded target is still a miss
    assert metrics[f"mrr@{10**9}"] == pytest.approx(1 / 3 / 2)
