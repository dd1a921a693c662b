"""Training windows: one function for pre-training and next-item fine-tuning."""

from __future__ import annotations

import pytest
import torch

from clue_fw.data.csr import Csr
from clue_fw.data.windows import training_windows
from clue_fw.heads.next_item import next_item_windows
from clue_fw.running.pretrain import pretrain_examples

ROWS = Csr.from_lists([[1, 2, 3, 4, 5, 6, 7], [8], [9, 10], [], [11, 12, 13, 14, 15]])


def items(windows: torch.Tensor) -> list[list[int]]:
    return [[v for v in row if v] for row in windows.tolist()]


@pytest.mark.parametrize("width", [1, 2, 3, 7, 9])
def test_pretraining_windows_hold_every_interaction_exactly_once(width: int) -> None:
    windows = training_windows(ROWS, width, "all", stride=width, min_items=1)
    assert windows.shape[1] == width
    assert sorted(v for row in items(windows) for v in row) == list(range(1, 16))
    assert torch.equal(pretrain_examples(ROWS, width, "all").tensors["items"], windows)


def test_recent_windows_are_each_rows_last_items() -> None:
    windows = training_windows(ROWS, 3, "recent", stride=3, min_items=1)
    assert items(windows) == [[5, 6, 7], [8], [9, 10], [13, 14, 15]]  # the empty row dropped
    assert items(training_windows(ROWS, 3, "recent", stride=3, min_items=2)) == [
        [5, 6, 7],
        [9, 10],
        [13, 14, 15],
    ]


@pytest.mark.parametrize("every_position", [True, False])
@pytest.mark.parametrize("history", ["recent", "all"])
def test_next_item_windows_are_training_windows(history: str, every_position: bool) -> None:
    width = 4
    windows = next_item_windows(ROWS, width, history, every_position)
    assert all(len(row) >= 2 for row in items(windows))  # an input and a target
    if history == "all":
        # every interaction but each user's first is a target once
        targets = sorted(row[-1] for row in items(windows))
        if not every_position:
            assert targets == [2, 3, 4, 5, 6, 7, 10, 12, 13, 14, 15]
        covered = {v for row in items(windows) for v in row[1:]}
        assert covered >= {2, 3, 4, 5, 6, 7, 10, 12, 13, 14, 15}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="history must be one of"):
        training_windows(ROWS, 3, "everything", stride=3, min_items=1)
    with pytest.raises(ValueError, match="must be positive"):
        training_windows(ROWS, 3, "all", stride=0, min_items=1)
