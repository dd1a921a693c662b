"""What a head spec tells inference (issue 19, move 4): the histories its test reads, the
user vector, and whether and how it ranks items. Inference asks the spec, never its class."""

from __future__ import annotations

import numpy as np
import torch

from clue_fw.components import Ranking, TaskData
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData, leave_one_out
from clue_fw.heads.specs import NextItemSpec, ProfileSpec


def data() -> SequenceData:
    rows = [[1, 2, 3, 4], [2, 3, 5], [4, 1, 2, 5, 3]]
    return SequenceData(Csr.from_lists(rows), 5, np.arange(1, 4), np.arange(11, 16))


def profile() -> ProfileSpec:
    return ProfileSpec(labels={"path": "labels.csv"}, user_vector="mean")


def test_next_item_ranks_by_its_own_protocol() -> None:
    spec = NextItemSpec(exclude_seen="none", ks=[5, 10], ties="average")
    assert spec.ranking == Ranking("none", [5, 10], "average")
    assert spec.ranking_problem("finetune") is None and spec.ranking_problem("pretrain") is None
    untied = NextItemSpec(tie_weights=False)
    assert "tie_weights: false" in str(untied.ranking_problem("pretrain"))
    assert untied.ranking_problem("finetune") is None
    assert spec.reads_user_vector == "ur"


def test_next_item_tests_on_everything_but_the_held_out_item() -> None:
    task = TaskData(data())
    histories = NextItemSpec().test_histories(task)
    expected = leave_one_out(task.sequences).train_valid
    assert torch.equal(histories.values, expected.values)
    assert torch.equal(histories.offsets, expected.offsets)


def test_a_user_level_head_ranks_nothing_and_reads_whole_sequences() -> None:
    spec = profile()
    assert spec.ranking is None
    assert "ranks no items" in str(spec.ranking_problem("finetune"))
    assert spec.reads_user_vector == "mean"
    task = TaskData(data())
    assert spec.test_histories(task) is task.sequences.sequences
