"""Tests for clue_fw.augmentations.compose: views applied in order with per-view probabilities."""

from __future__ import annotations

import pytest
import torch

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.components import Augmentation, BuildContext
from clue_fw.errors import PluginError


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
    view = DropoutViewSpec(probability=1.0).build(BuildContext(num_items=9, max_len=4))
    assert torch.equal(view(ITEMS, torch.Generator()), ITEMS)


@pytest.mark.parametrize("probability", [0.0, 0.3, 0.999])
def test_dropout_view_refuses_a_probability_it_would_ignore(probability: float) -> None:
    """The dropout view never changes items, so p = 0 would train like p = 1."""
    with pytest.raises(ValueError, match="a probability other than 1 has no effect"):
        DropoutViewSpec(probability=probability)


# --------------------------------------------------------------------------- the view contract


class Shrink(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items[:, 1:]


class ToFloat(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items.float()


class FillPadding(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items + 1


class HoleInTheMiddle(Augmentation):
    """Removes the item in column 2 without re-packing: padding after a real item."""

    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = items.clone()
        out[:, 2] = 0
        return out


class Negative(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return -items


class BeyondMask(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.where(items != 0, 99, 0)


class NotATensor(Augmentation):
    def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return items.tolist()  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("view", "fragment"),
    [
        (Shrink(), "for items of shape [100, 4] (torch.int64) it returned shape [100, 3]"),
        (ToFloat(), "it returned shape [100, 4] (torch.float32)"),
        (FillPadding(), "it wrote an item into a padding position"),
        (HoleInTheMiddle(), "its rows are no longer left-padded"),
        (Negative(), "it wrote ids outside 0..10"),
        (BeyondMask(), "it wrote ids outside 0..10"),
        (NotATensor(), "it returned list, not a tensor"),
    ],
)
def test_a_view_that_breaks_the_contract(view: Augmentation, fragment: str) -> None:
    pipeline = ViewPipeline([AddOne(), view], [1.0, 0.5], ["add_one", "broken"], max_id=10)
    with pytest.raises(PluginError) as info:
        pipeline(ITEMS, torch.Generator().manual_seed(0))
    message = str(info.value)
    assert f"View 'broken' ({type(view).__name__} (module {__name__}" in message
    assert "broke the view contract" in message and fragment in message


def test_views_from_specs_know_their_kinds_and_the_mask_id() -> None:
    context = BuildContext(num_items=9, max_len=4)
    pipeline = ViewPipeline.from_specs([DropoutViewSpec()], context)
    assert (pipeline.kinds, pipeline.max_id) == (["dropout"], context.mask_id)


def test_a_view_may_add_padding_on_the_left() -> None:
    """Crop re-packs: more padding is fine, as long as rows stay left-padded."""

    class DropFirstItem(Augmentation):
        def forward(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return torch.cat([torch.zeros_like(items[:, :1]), items[:, 1:]], dim=1)

    out = ViewPipeline([DropFirstItem()], [1.0])(ITEMS, torch.Generator())
    assert torch.equal(out[:, 0], torch.zeros(100, dtype=torch.long))
