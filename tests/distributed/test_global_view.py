"""GlobalView and GradientSync: the per-step work of a data-parallel run, without host syncs."""

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


def test_gradient_flags_are_made_once_per_pattern() -> None:
    """A CUDA tensor made from a Python list waits for the device: GradientSync makes
    each had-a-gradient pattern once, not once per step."""
    from clue_fw.distributed import GradientSync

    sync = GradientSync(2)
    first = sync._flags_tensor([True, True], torch.float32, torch.device("cpu"))
    again = sync._flags_tensor([True, True], torch.float32, torch.device("cpu"))
    other = sync._flags_tensor([True, False], torch.float32, torch.device("cpu"))
    assert first is again and other is not first
    assert other.tolist() == [1.0, 0.0]


def test_a_pair_of_split_views_is_drawn_on_the_global_batch() -> None:
    """Each process's two branches are its rows of the pair one process would draw from
    the whole global batch (so the halves are the same as in a one-process run)."""
    from clue_fw.augmentations.compose import ViewPipeline
    from clue_fw.augmentations.split import SplitView
    from clue_fw.components import view_pair

    whole = torch.arange(1, 49).reshape(6, 8)
    pipeline = ViewPipeline([SplitView(0.5)], [1.0])
    batches = SimpleNamespace(current=GlobalBatch({"items": whole}, (2, 4)))
    view = GlobalView(pipeline, batches, "items")
    first, second = view_pair(view, whole[2:4], torch.Generator().manual_seed(3))
    one_first, one_second = pipeline.pair(whole, torch.Generator().manual_seed(3))
    assert torch.equal(first, one_first[2:4]) and torch.equal(second, one_second[2:4])
    # other sequences (not this process's rows) are paired on their own
    other = view_pair(view, whole[:2] + 100, torch.Generator().manual_seed(3))
    alone = pipeline.pair(whole[:2] + 100, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(other, alone, strict=True))
