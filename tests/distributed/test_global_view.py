"""GlobalView: a process's rows are viewed as part of the global batch, found cheaply."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from clue_fw.data.examples import GlobalBatch
from clue_fw.distributed import GlobalView


def row_numbers(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 'view' that shows which rows of its input it saw: each row's index."""
    return torch.arange(items.shape[0]).unsqueeze(1).expand_as(items).clone()


def global_view() -> tuple[GlobalView, torch.Tensor]:
    whole = torch.arange(24).reshape(6, 4)
    batches = SimpleNamespace(current=GlobalBatch({"items": whole}, (2, 4)))
    return GlobalView(row_numbers, batches, "items"), whole


def test_the_slice_of_the_global_batch_is_viewed_within_it() -> None:
    view, whole = global_view()
    mine = whole[2:4]
    assert view(mine, torch.Generator())[:, 0].tolist() == [2, 3]


def test_an_equal_copy_is_still_recognised() -> None:
    view, whole = global_view()
    assert view(whole[2:4].clone(), torch.Generator())[:, 0].tolist() == [2, 3]


def test_other_sequences_are_viewed_on_their_own() -> None:
    view, whole = global_view()
    assert view(whole[2:4] + 1, torch.Generator())[:, 0].tolist() == [0, 1]
    assert view(whole[:3], torch.Generator())[:, 0].tolist() == [0, 1, 2]
