"""clue_fw.metrics.blockwise: ranking over blocks of items equals ranking the whole matrix.

The reference is the one-matrix path the heads use without ``item_block``: excluded pairs
set to ``-inf``, then :func:`ranking_sums`; for top-k, a stable descending sort of each
whole row (equal scores by lower column first).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clue_fw.metrics.blockwise import (
    ExcludedPairs,
    blocks_of,
    blockwise_ranking_sums,
    blockwise_top_k,
    check_item_block,
    decode_keys,
    order_keys,
)
from clue_fw.metrics.ranking import NAN_ROWS, ranking_sums
from clue_fw.metrics.scoring import ItemScorer

INF = float("inf")


class MatrixScorer:
    """Blocks of a fixed score matrix (any values: ties, infinities, NaN)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix
        self.requests: list[int] = []  # the width of every block asked for

    @property
    def rows(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def num_columns(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def scores(self, columns: slice | torch.Tensor) -> torch.Tensor:
        block = self.matrix[:, columns].clone()
        self.requests.append(int(block.shape[1]))
        return block


def masked(matrix: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    scores = matrix.clone()
    scores[rows, columns] = -INF
    return scores


def grids(values: st.SearchStrategy[float], rows: int, columns: int) -> st.SearchStrategy[Any]:
    """``rows`` lists of ``columns`` values."""
    row = st.lists(values, min_size=columns, max_size=columns)
    return st.lists(row, min_size=rows, max_size=rows)


def pair_lists(rows: int, first: int, columns: int, most: int) -> st.SearchStrategy[Any]:
    """Up to ``most`` (row, column) pairs, columns from ``first``, repeats allowed."""
    pair = st.tuples(st.integers(0, rows - 1), st.integers(first, columns - 1))
    return st.lists(pair, max_size=most)


@st.composite
def ranking_cases(draw: st.DrawFn) -> dict[str, object]:
    """A score matrix full of ties and -inf (few distinct values), targets (the padding
    column 0 among them), repeated excluded pairs (targets among them) and a block size."""
    rows = draw(st.integers(1, 6))
    columns = draw(st.integers(2, 12))
    values = st.sampled_from([-INF, -1.0, 0.0, 0.5, 1.0, 2.0])
    matrix = torch.tensor(draw(grids(values, rows, columns)))
    matrix[:, 0] = -INF  # padding, as next_item scores it
    target = torch.tensor(draw(st.lists(st.integers(0, columns - 1), min_size=rows, max_size=rows)))
    pairs = draw(pair_lists(rows, 1, columns, 3 * rows))
    pair_rows = torch.tensor([r for r, _ in pairs], dtype=torch.int64)
    pair_columns = torch.tensor([c for _, c in pairs], dtype=torch.int64)
    return {
        "matrix": matrix,
        "target": target,
        "pairs": (pair_rows, pair_columns),
        "item_block": draw(st.integers(1, rows + columns + 1)),
        "ties": draw(st.sampled_from(["pessimistic", "average"])),
        "ks": sorted(set(draw(st.lists(st.integers(1, columns + 2), min_size=1, max_size=3)))),
    }


def assert_same_sums(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert found.keys() == expected.keys()
    for name in expected:
        assert torch.equal(found[name], expected[name]), name


@settings(max_examples=300, deadline=None)
@given(ranking_cases())
def test_blocked_sums_equal_the_whole_matrix_bit_for_bit(case: dict[str, object]) -> None:
    matrix, target = case["matrix"], case["target"]
    rows, columns = case["pairs"]
    assert isinstance(matrix, torch.Tensor) and isinstance(target, torch.Tensor)
    expected = ranking_sums(masked(matrix, rows, columns), target, case["ks"], case["ties"])
    excluded = ExcludedPairs.of(rows, columns, matrix.shape[1])
    found = blockwise_ranking_sums(
        MatrixScorer(matrix), target, case["ks"], case["ties"], case["item_block"], excluded
    )
    assert_same_sums(found, expected)


def test_every_block_has_one_width_and_every_item_is_counted_once() -> None:
    matrix = torch.randn(5, 103)
    scorer = MatrixScorer(matrix)
    blockwise_ranking_sums(scorer, torch.tensor([3, 50, 102, 0, 7]), [10], "pessimistic", 16)
    # 5 target columns + 103 items = 108 virtual columns: 7 blocks of 16, the last moved back
    assert scorer.requests == [16] * 7
    assert list(blocks_of(108, 16))[-1] == (92, 108, 96)
    assert list(blocks_of(5, 16)) == [(0, 5, 0)]


def test_a_nan_counts_unless_its_pair_is_excluded() -> None:
    nan = float("nan")
    matrix = torch.tensor([[-INF, 1.0, nan, 3.0], [-INF, nan, 2.0, 0.0], [-INF, 1.0, 2.0, 3.0]])
    target = torch.tensor([1, 2, 1])
    for item_block in (1, 2, 3, 10):
        for rows, columns in (([], []), ([0], [2]), ([0, 1], [2, 1])):
            pair_rows, pair_columns = torch.tensor(rows).long(), torch.tensor(columns).long()
            excluded = ExcludedPairs.of(pair_rows, pair_columns, 4)
            found = blockwise_ranking_sums(
                MatrixScorer(matrix), target, [1, 3], "average", item_block, excluded
            )
            expected = ranking_sums(masked(matrix, pair_rows, pair_columns), target, [1, 3])
            assert float(found[NAN_ROWS]) == float(expected[NAN_ROWS]) == 2 - len(rows)


def test_a_nan_target_score_makes_a_nan_row() -> None:
    matrix = torch.tensor([[-INF, float("nan"), 1.0]])
    found = blockwise_ranking_sums(MatrixScorer(matrix), torch.tensor([1]), [1], "pessimistic", 1)
    assert float(found[NAN_ROWS]) == 1.0


@pytest.mark.parametrize("item_block", [256, 1000, 2048])
@pytest.mark.parametrize("ties", ["pessimistic", "average"])
def test_real_products_rank_as_the_whole_product(item_block: int, ties: str) -> None:
    """Float32 products of random vectors, with duplicated item vectors (exact ties) and
    seen items: the blocks' products equal the whole product's columns here (a batch of
    64 users, blocks of hundreds of items), so the sums are the same to the bit."""
    generator = torch.Generator().manual_seed(item_block)
    users = torch.randn(64, 16, generator=generator)
    weight = torch.randn(3000, 16, generator=generator)
    weight[1500:2000] = weight[1000:1500]  # every item of 1500..1999 ties with another
    scorer = ItemScorer(users, weight, padding=0)
    target = torch.randint(0, 3000, (64,), generator=generator)
    target[:5] = torch.tensor([0, 1200, 1700, 2999, 1])
    seen_rows = torch.randint(0, 64, (600,), generator=generator)
    seen_columns = torch.randint(1, 3000, (600,), generator=generator)
    seen_columns[:3] = target[seen_rows[:3]]  # some targets are seen: misses
    whole = masked(scorer.scores(slice(None)), seen_rows, seen_columns)
    expected = ranking_sums(whole, target, [1, 10, 500], ties)
    excluded = ExcludedPairs.of(seen_rows, seen_columns, 3000)
    found = blockwise_ranking_sums(scorer, target, [1, 10, 500], ties, item_block, excluded)
    assert_same_sums(found, expected)


@st.composite
def top_k_cases(draw: st.DrawFn) -> dict[str, object]:
    rows, columns = draw(st.integers(1, 5)), draw(st.integers(1, 14))
    values = st.sampled_from([-INF, -2.5, -0.0, 0.0, 1.0, 1.5, INF])
    matrix = torch.tensor(draw(grids(values, rows, columns)))
    pairs = draw(pair_lists(rows, 0, columns, 2 * rows))
    allowed = draw(st.none() | st.lists(st.booleans(), min_size=columns, max_size=columns))
    return {
        "matrix": matrix,
        "pairs": pairs,
        "allowed": None if allowed is None else torch.tensor(allowed),
        "k": draw(st.integers(1, columns)),
        "item_block": draw(st.integers(1, columns + 1)),
    }


@settings(max_examples=300, deadline=None)
@given(top_k_cases())
def test_blocked_top_k_is_a_stable_sort_of_the_whole_row(case: dict[str, object]) -> None:
    matrix, k = case["matrix"], case["k"]
    assert isinstance(matrix, torch.Tensor) and isinstance(k, int)
    rows = torch.tensor([r for r, _ in case["pairs"]], dtype=torch.int64)
    columns = torch.tensor([c for _, c in case["pairs"]], dtype=torch.int64)
    whole = masked(matrix, rows, columns)
    allowed = case["allowed"]
    if isinstance(allowed, torch.Tensor):
        whole[:, ~allowed] = -INF
    whole = whole + 0.0  # -0.0 and 0.0 are one score
    expected_values, expected_columns = torch.sort(whole, dim=1, descending=True, stable=True)
    excluded = ExcludedPairs.of(rows, columns, matrix.shape[1])
    values, found, nan_rows = blockwise_top_k(
        MatrixScorer(matrix), k, case["item_block"], excluded, allowed
    )
    assert torch.equal(found, expected_columns[:, :k])
    assert torch.equal(values, expected_values[:, :k])
    assert not nan_rows.any()


def test_top_k_values_and_columns_match_topk_where_nothing_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    users, weight = (
        torch.randn(40, 8, generator=generator),
        torch.randn(3000, 8, generator=generator),
    )
    scorer = ItemScorer(users, weight, padding=0)
    expected_values, expected_columns = torch.topk(scorer.scores(slice(None)), 20, dim=1)
    for item_block in (256, 1000, 3000):
        values, columns, _ = blockwise_top_k(scorer, 20, item_block)
        assert torch.equal(columns, expected_columns)
        assert torch.equal(values, expected_values)


def test_top_k_reports_rows_with_a_nan_score() -> None:
    matrix = torch.tensor([[1.0, float("nan"), 0.0], [1.0, 2.0, 0.0]])
    _, _, nan_rows = blockwise_top_k(MatrixScorer(matrix), 2, 2)
    assert nan_rows.tolist() == [True, False]
    excluded = ExcludedPairs.of(torch.tensor([0]), torch.tensor([1]), 3)
    _, _, nan_rows = blockwise_top_k(MatrixScorer(matrix), 2, 2, excluded)
    assert nan_rows.tolist() == [False, False]  # the NaN item is excluded


def test_order_keys_sort_scores_then_columns_and_decode_back() -> None:
    scores = torch.tensor([[-INF, -3.5, -0.0, 0.0, 1e-30, 2.0, INF, 2.0]])
    keys = order_keys(scores, first_column=10)
    order = keys.argsort(dim=1, descending=True)
    assert order.tolist() == [[6, 5, 7, 4, 2, 3, 1, 0]]  # ties: lower column first
    values, columns = decode_keys(keys)
    assert torch.equal(values, scores + 0.0)
    assert columns.tolist() == [list(range(10, 18))]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_a_bad_item_block_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ValueError, match="finetune.head.item_block"):
        check_item_block(bad)  # type: ignore[arg-type]
