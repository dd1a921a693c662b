"""GlobalView and GradientSync: the per-step work of a data-parallel run, without host syncs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
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


def row_stamp(items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 'view' that shows what it saw: each row plus 1000 times its index."""
    return items + 1000 * torch.arange(items.shape[0]).unsqueeze(1)


def test_sequences_of_the_rows_shape_take_this_process_s_place() -> None:
    """Other sequences of this process's rows' shape are viewed in their place in the
    global batch (each row with its global row's draws, as in one process), without a
    comparison of values, which would wait for the device."""
    whole = torch.arange(24).reshape(6, 4)
    batches = SimpleNamespace(current=GlobalBatch({"items": whole}, (2, 4)))
    view = GlobalView(row_stamp, batches, "items")
    other = whole[2:4] + 1
    assert torch.equal(view(other, torch.Generator()), other + torch.tensor([[2000], [3000]]))


def test_sequences_of_another_shape_are_viewed_on_their_own() -> None:
    view, whole = global_view()
    assert view(whole[:3], torch.Generator())[:, 0].tolist() == [0, 1, 2]
    assert view(whole[2:4, :3], torch.Generator())[:, 0].tolist() == [0, 1]
    assert view(whole[2:4].double(), torch.Generator())[:, 0].tolist() == [0, 1]


def test_no_values_are_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which rows are ours is known from shapes and memory: no value reaches the host."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("GlobalView read a tensor's value on the host")

    view, whole = global_view()
    for name in ("__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    monkeypatch.setattr(torch, "equal", refuse)
    for items in (whole[2:4], whole[2:4].clone(), whole[2:4] + 1, whole[:3]):
        view(items, torch.Generator())
        view.pair(items, torch.Generator())


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
    # other sequences of the rows' shape are paired in this process's place
    other = view_pair(view, whole[:2] + 100, torch.Generator().manual_seed(3))
    placed = torch.cat([whole[:2], whole[:2] + 100, whole[4:]])
    in_place = pipeline.pair(placed, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b[2:4]) for a, b in zip(other, in_place, strict=True))
    # sequences of another shape are paired on their own
    other = view_pair(view, whole[:3] + 100, torch.Generator().manual_seed(3))
    alone = pipeline.pair(whole[:3] + 100, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(other, alone, strict=True))
