"""Tests for clue_fw.heads.next_item: windows, loss and full-ranking metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import BuildContext, EncoderOutput, SequenceEncoder, TaskData
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.heads.next_item import NextItemHead, NextItemSpec, next_item_windows
from clue_fw.metrics.ranking import finalize_sums, reference_metrics

NUM_ITEMS = 6
# next_item builds from the context alone; its task data is not read
NO_TASK_DATA = TaskData(SequenceData(Csr.from_lists([[1]]), 1, np.array([1]), np.array([1])))


class FixedScores(SequenceEncoder):
    """Scores item i with ``user_scores[i]`` (one-hot item embeddings), whatever the input."""

    def __init__(self, user_scores: list[float]) -> None:
        super().__init__()
        self.num_items = NUM_ITEMS
        self.dim = NUM_ITEMS + 2
        self.max_len = 4
        self.item_embedding = nn.Embedding(self.dim, self.dim)
        with torch.no_grad():
            self.item_embedding.weight.copy_(torch.eye(self.dim))
        self.user_scores = torch.tensor(user_scores + [0.0] * (self.dim - len(user_scores)))

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = self.user_scores.expand(items.shape[0], -1)
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


def head(exclude_seen: bool) -> NextItemHead:
    encoder = FixedScores([0.0])
    return NextItemSpec(exclude_seen=exclude_seen, ks=[1, 3]).build(
        BuildContext(NUM_ITEMS, 4), encoder, NO_TASK_DATA
    )


# item:        0 (padding)  1    2    3    4    5    6
SCORES = [100.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def metric_batch(target: int, seen: list[int]) -> dict[str, torch.Tensor]:
    return {
        "items": torch.tensor([[0, 1, 2, 3]]),
        "target": torch.tensor([target]),
        "seen_row": torch.zeros(len(seen), dtype=torch.long),
        "seen_value": torch.tensor(seen, dtype=torch.long),
    }


def rank_of(exclude_seen: bool, target: int, seen: list[int]) -> float:
    h = head(exclude_seen)
    sums = h.metric_sums(FixedScores(SCORES), metric_batch(target, seen))
    assert float(sums["count"]) == 1
    mrr = float(sums["mrr@3"])
    return 1 / mrr if mrr else float("inf")


def test_padding_is_never_ranked() -> None:
    # item 0 scores 100 but is padding: item 1 is still first
    assert rank_of(False, target=1, seen=[]) == 1
    assert rank_of(False, target=3, seen=[]) == 3


def test_exclude_seen_masks_seen_items() -> None:
    assert rank_of(False, target=4, seen=[1, 2]) == float("inf")  # rank 4 > 3
    assert rank_of(True, target=4, seen=[1, 2]) == 2


def test_target_stays_rankable_when_seen() -> None:
    # the target itself was seen before: it is still ranked, only the other seen items go
    assert rank_of(True, target=3, seen=[3, 1]) == 2
    assert rank_of(True, target=1, seen=[1]) == 1


def test_metric_sums_against_reference() -> None:
    h = head(True)
    batch = {
        "items": torch.zeros(3, 4, dtype=torch.long),
        "target": torch.tensor([1, 4, 6]),
        # row 0 saw nothing, row 1 saw items 2 and 3, row 2 saw 1, 2, 3, 6
        "seen_row": torch.tensor([1, 1, 2, 2, 2, 2]),
        "seen_value": torch.tensor([2, 3, 1, 2, 3, 6]),
    }
    metrics = h.finalize(h.metric_sums(FixedScores(SCORES), batch))
    ranks = [1, 2, 3]  # row 2: 4 and 5 above 6
    for k in (1, 3):
        for name in ("mrr", "recall", "ndcg"):
            expected = np.mean([reference_metrics(r, k)[name] for r in ranks])
            assert metrics[f"{name}@{k}"] == pytest.approx(expected)


def test_untied_output_layer_scores_num_items_plus_one() -> None:
    context = BuildContext(NUM_ITEMS, 4)
    encoder = TransformerSpec(dim=8, heads=2, blocks=1).build(context)
    h = NextItemSpec(tie_weights=False).build(context, encoder, NO_TASK_DATA)
    assert h.output is not None and h.output.out_features == NUM_ITEMS + 1
    scores = h.logits(encoder, torch.randn(2, 8))
    assert scores.shape == (2, NUM_ITEMS + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()


# --------------------------------------------------------------------------- windows and tasks


def random_rows(seed: int, count: int = 25) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 40, size=int(rng.integers(1, 15))).tolist() for _ in range(count)]


@pytest.mark.parametrize("seed", [0, 1])
def test_all_history_every_position_pairs_each_transition_once(seed: int) -> None:
    rows = random_rows(seed)
    width = 5  # n + 1
    windows = next_item_windows(Csr.from_lists(rows), width, "all", every_position=True)
    pairs = [
        (w[j], w[j + 1]) for w in windows.tolist() for j in range(width - 1) if w[j] and w[j + 1]
    ]
    # every (input, target) transition of every user appears exactly once
    expected = [(row[t - 1], row[t]) for row in rows for t in range(1, len(row))]
    assert sorted(pairs) == sorted(expected)
    # and each window's real items are consecutive items of one user (no gaps)
    for w in windows.tolist():
        real = [v for v in w if v]
        assert w[-len(real) :] == real


@pytest.mark.parametrize("seed", [0, 1])
def test_all_history_ur_only_uses_every_prefix(seed: int) -> None:
    rows = random_rows(seed)
    width = 4
    windows = next_item_windows(Csr.from_lists(rows), width, "all", every_position=False)
    got = sorted(tuple(w) for w in windows.tolist())
    expected = sorted(
        tuple([0] * (width - len(row[max(0, e - width) : e])) + row[max(0, e - width) : e])
        for row in rows
        for e in range(2, len(row) + 1)
    )
    assert got == expected


def test_recent_history_one_window_per_user() -> None:
    rows = [[1, 2, 3, 4, 5, 6], [7, 8], [9]]
    windows = next_item_windows(Csr.from_lists(rows), 4, "recent", every_position=True)
    # the one-item user has no (input, target) pair and is dropped
    assert windows.tolist() == [[3, 4, 5, 6], [0, 0, 7, 8]]


def test_make_task_leave_one_out_examples() -> None:
    data = SequenceData(
        Csr.from_lists([[1, 2, 3, 4, 5], [6, 1, 2]]),
        num_items=6,
        user_ids=np.array([10, 20]),
        item_ids=np.arange(1, 7),
    )
    context = BuildContext(num_items=6, max_len=3)
    task = NextItemSpec().make_task(TaskData(data), context, "recent")
    assert task.valid.tensors["target"].tolist() == [4, 1]
    assert task.test.tensors["target"].tolist() == [5, 2]
    assert task.valid.tensors["items"].tolist() == [[1, 2, 3], [0, 0, 6]]
    assert task.test.tensors["items"].tolist() == [[2, 3, 4], [0, 6, 1]]
    assert task.train.tensors["window"].tolist() == [[0, 1, 2, 3]]  # user 2 has one train item
    valid_batch = next(task.valid.batches(10))
    assert valid_batch["seen_row"].tolist() == [0, 0, 0, 1]
    assert valid_batch["seen_value"].tolist() == [1, 2, 3, 6]  # validation item not seen yet
    no_seen = NextItemSpec(exclude_seen=False).make_task(TaskData(data), context, "recent")
    assert "seen_row" not in next(no_seen.valid.batches(10))


@pytest.mark.parametrize("positions", ["all", "ur"])
def test_loss_trains(positions: str) -> None:
    torch.manual_seed(0)
    context = BuildContext(num_items=12, max_len=5)
    encoder = TransformerSpec(dim=16, heads=2, blocks=1, dropout=0.0).build(context)
    h = NextItemSpec(loss_positions=positions).build(context, encoder, NO_TASK_DATA)
    windows = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6]])
    optimizer = torch.optim.Adam(encoder.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = h.loss(encoder, {"window": windows}).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ks_validation_and_monitor() -> None:
    spec = NextItemSpec(ks=[20, 5, 5])
    assert spec.ks == [5, 20]
    assert spec.monitor_default == "ndcg@5"
    with pytest.raises(ValueError):
        NextItemSpec(ks=[0])
    with pytest.raises(ValueError):
        NextItemSpec(ks=[])


def test_finalize_matches_ranking_module() -> None:
    sums = {"count": torch.tensor(2.0), "recall@10": torch.tensor(1.0)}
    assert head(True).finalize(sums) == finalize_sums(sums) == {"recall@10": 0.5}
