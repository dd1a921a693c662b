"""Tests for clue_fw.augmentations.compose: views applied in order with per-view probabilities."""

from __future__ import annotations

import pytest
import torch

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.components import Augmentation, BuildContext


class AddOne(Augmentation):
    """Adds 1 to every real item (padding stays 0)."""

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.where(items != 0, items + 1, items)


class Double(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items * 2


ITEMS = torch.tensor([[0, 0, 1, 2], [3, 4, 5, 6]] * 50)


def test_views_apply_in_order() -> None:
    pipeline = ViewPipeline([AddOne(), Double()], [1.0, 1.0])
    assert torch.equal(
        pipeline(ITEMS, torch.Generator()), torch.where(ITEMS != 0, 2 * ITEMS + 2, 0)
    )
    reverse = ViewPipeline([Double(), AddOne()], [1.0, 1.0])
    assert torch.equal(reverse(ITEMS, torch.Generator()), torch.where(ITEMS != 0, 2 * ITEMS + 1, 0))


def test_probability_zero_is_identity() -> None:
    pipeline = ViewPipeline([AddOne()], [0.0])
    assert torch.equal(pipeline(ITEMS, torch.Generator()), ITEMS)


def test_probability_picks_whole_rows_independently_per_call() -> None:
    pipeline = ViewPipeline([AddOne()], [0.5])
    generator = torch.Generator().manual_seed(0)
    first, second = pipeline(ITEMS, generator), pipeline(ITEMS, generator)
    for out in (first, second):
        changed = (out != ITEMS).any(dim=1)
        # a row is either untouched or changed entirely (padding never changes)
        assert torch.equal(out[changed], torch.where(ITEMS != 0, ITEMS + 1, 0)[changed])
        assert torch.equal(out[~changed], ITEMS[~changed])
        assert 0.3 < changed.float().mean().item() < 0.7
    assert not torch.equal(first, second)  # two branches draw independent randomness
    again = torch.Generator().manual_seed(0)
    assert torch.equal(pipeline(ITEMS, again), first)  # but reproducibly


def test_mismatched_probabilities() -> None:
    with pytest.raises(ValueError):
        ViewPipeline([AddOne(), Double()], [1.0])


def test_dropout_view_spec_probability_bounds() -> None:
    assert DropoutViewSpec().probability == 1.0
    with pytest.raises(ValueError):
        DropoutViewSpec(probability=1.5)
    view = DropoutViewSpec(probability=0.3).build(BuildContext(num_items=9, max_len=4))
    assert torch.equal(view(ITEMS, torch.Generator()), ITEMS)
