"""The label-free next-item check against ranks worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

import clue_fw.probing.next_item as next_item
from clue_fw.data.csr import Csr
from clue_fw.probing.next_item import NextItemSplits, popularity_metrics, rank_items

# Items 1..4 as 2-d vectors; one user vector [1, 0].
ITEMS = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 5.0], [2.0, 9.0]])
USER = torch.tensor([[1.0, 0.0]])


def test_dot_product_ranks_with_history_excluded_and_pessimistic_ties() -> None:
    # dot scores: item 1: 3, item 2: 2, item 3: 1, item 4: 2. Item 1 is in the history
    # (excluded); target 4 ties with item 2, so it ranks 2nd (pessimistic).
    metrics = rank_items(USER, ITEMS, Csr.from_lists([[1]]), torch.tensor([4]), [1, 2])
    assert metrics["recall@1"] == 0.0 and metrics["recall@2"] == 1.0
    assert metrics["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert metrics["mrr@2"] == pytest.approx(0.5)


def test_cosine_ignores_item_length() -> None:
    # cosines: items 1 and 2 are 1.0, item 3 about 0.196, item 4 about 0.217: target 2
    # ties item 1, which is not excluded, so it ranks 2nd
    metrics = rank_items(USER, ITEMS, Csr.from_lists([[]]), torch.tensor([2]), [1, 2], "cosine")
    assert (metrics["recall@1"], metrics["recall@2"]) == (0.0, 1.0)


def test_a_target_in_the_history_is_a_miss() -> None:
    metrics = rank_items(USER, ITEMS, Csr.from_lists([[1]]), torch.tensor([1]), [4])
    assert metrics["recall@4"] == 0.0


def test_batches_do_not_change_the_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(9, 2, generator=generator)
    history = Csr.from_lists([[1 + (u % 4)] for u in range(9)])
    target = torch.tensor([1 + ((u + 1) % 4) for u in range(9)])
    whole = rank_items(vectors, ITEMS, history, target, [1, 3])
    monkeypatch.setattr(next_item, "SCORE_ENTRIES", 10)  # two users a batch
    assert rank_items(vectors, ITEMS, history, target, [1, 3]) == pytest.approx(whole)


def test_leave_one_out_cut_skips_short_users() -> None:
    splits = NextItemSplits.of(Csr.from_lists([[1, 2, 3, 4], [2, 3], [4, 1, 2]]))
    assert splits.rows.tolist() == [0, 2]
    assert splits.valid_target.tolist() == [3, 1] and splits.test_target.tolist() == [4, 2]
    history, target = splits.split("valid")
    assert history.row(0).tolist() == [1, 2] and target.tolist() == [3, 1]
    # popularity counts the training parts [1, 2] and [4]: items 1, 2 and 4 once each
    popularity = popularity_metrics(splits, 4, [1, 2])
    # valid, user 0 (history 1, 2; target 3, count 0): item 4 above it, rank 2;
    # user 2 (history 4; target 1): item 2 ties it, rank 2 (pessimistic)
    assert popularity["valid"]["recall@1"] == 0.0
    assert popularity["valid"]["recall@2"] == 1.0
