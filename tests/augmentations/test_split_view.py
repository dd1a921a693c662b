"""The split view: each branch of a pair gets a disjoint random part of the sequence."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from clue_fw.augmentations.compose import ViewPipeline
from clue_fw.augmentations.mask import MaskView
from clue_fw.augmentations.split import SplitView, SplitViewSpec
from clue_fw.components import BuildContext, view_pair
from clue_fw.errors import PluginError
from clue_fw.testing.strategies import item_batches, seeds

FAST = settings(max_examples=80, deadline=None)
CONTEXT = BuildContext(num_items=30, max_len=20)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def real(row: torch.Tensor) -> list[int]:
    return [int(i) for i in row if i != 0]


def is_subsequence(part: list[int], whole: list[int]) -> bool:
    """``part`` is ``whole`` with some positions left out, in the same order."""
    rest = iter(whole)
    return all(any(item == other for other in rest) for item in part)


@FAST
@given(items=item_batches(), seed=seeds, share=st.floats(0.01, 0.99))
def test_the_parts_are_disjoint_ordered_and_together_the_sequence(
    items: torch.Tensor, seed: int, share: float
) -> None:
    first, second = SplitView(share).split(items, generator(seed))
    for row, a, b in zip(items, first, second, strict=True):
        whole, part_a, part_b = real(row), real(a), real(b)
        if len(whole) < 2:
            assert part_a == whole and part_b == whole  # too short to split: whole to both
            continue
        assert Counter(part_a) + Counter(part_b) == Counter(whole)
        assert is_subsequence(part_a, whole) and is_subsequence(part_b, whole)
        expected = min(max(int(share * 1_000_000) * len(whole) // 1_000_000, 1), len(whole) - 1)
        assert len(part_a) == expected and len(part_b) == len(whole) - expected
    for part in (first, second):  # left-padded, as every view's output
        present = (part != 0).long()
        assert bool((present[:, 1:] >= present[:, :-1]).all())


def test_positions_not_ids_are_split() -> None:
    # A row that repeats an item: each position goes to exactly one part.
    items = torch.tensor([[3, 3, 3, 3, 5, 5]])
    first, second = SplitView(0.5).split(items, generator())
    assert sorted(real(first[0]) + real(second[0])) == [3, 3, 3, 3, 5, 5]


def test_the_split_is_uniform_over_positions() -> None:
    items = torch.arange(1, 11).repeat(4000, 1)
    first, _ = SplitView(0.5).split(items, generator(1))
    share_in_first = torch.stack([(first == item).any(dim=1) for item in range(1, 11)]).float()
    assert torch.allclose(share_in_first.mean(dim=1), torch.full((10,), 0.5), atol=0.03)


def test_same_generator_same_split_and_a_new_draw_differs() -> None:
    items = torch.arange(1, 21).repeat(8, 1)
    view = SplitView(0.5)
    once = view.split(items, generator(7))
    again = view.split(items, generator(7))
    assert all(torch.equal(a, b) for a, b in zip(once, again, strict=True))
    other = view.split(items, generator(8))
    assert not torch.equal(once[0], other[0])


def test_alone_it_is_the_first_part() -> None:
    items = torch.arange(1, 11).repeat(3, 1)
    single = SplitView(0.3)(items, generator(4))
    first, _ = SplitView(0.3).split(items, generator(4))
    assert torch.equal(single, first)


def test_in_a_pipeline_later_views_change_each_part_on_its_own() -> None:
    items = torch.arange(1, 21).repeat(64, 1)
    mask_id = 99
    pipeline = ViewPipeline([SplitView(0.5), MaskView(0.5, mask_id)], [1.0, 1.0], max_id=mask_id)
    first, second = pipeline.pair(items, generator(3))
    unmasked = [set(real(r)) - {mask_id} for r in first], [set(real(r)) - {mask_id} for r in second]
    assert all(not (a & b) for a, b in zip(*unmasked, strict=True))  # still disjoint
    assert (first == mask_id).any() and (second == mask_id).any()
    assert ((first != 0).sum(dim=1) == 10).all() and ((second != 0).sum(dim=1) == 10).all()


def test_its_probability_leaves_the_other_rows_whole_in_both_branches() -> None:
    items = torch.arange(1, 11).repeat(2000, 1)
    first, second = ViewPipeline([SplitView(0.5)], [0.25]).pair(items, generator(2))
    split_rows = (first != items).any(dim=1)
    assert torch.equal(split_rows, (second != items).any(dim=1))
    assert abs(split_rows.float().mean().item() - 0.25) < 0.03
    assert torch.equal(first[~split_rows], items[~split_rows])


def test_without_a_pairing_view_a_pair_is_two_independent_calls() -> None:
    items = torch.arange(1, 11).repeat(16, 1)
    pipeline = ViewPipeline([MaskView(0.5, 99)], [1.0], max_id=99)
    first, second = pipeline.pair(items, generator(5))
    reference = generator(5)
    assert torch.equal(first, pipeline(items, reference))
    assert torch.equal(second, pipeline(items, reference))
    # a plain callable without `pair` gets the same two calls
    plain = view_pair(lambda x, g: pipeline(x, g), items, generator(5))
    assert torch.equal(plain[0], first) and torch.equal(plain[1], second)


def test_a_pairing_view_that_returns_a_bad_split_is_named() -> None:
    class BadSplit(SplitView):
        def split(self, items, generator):  # type: ignore[no-untyped-def, override]
            return items[:, :-1], items

    with pytest.raises(PluginError, match="'split'.*shape"):
        ViewPipeline([BadSplit(0.5)], [1.0], ["split"]).pair(torch.ones(2, 4).long(), generator())


def test_spec_bounds_and_build() -> None:
    assert SplitViewSpec().build(CONTEXT).share == 0.5
    assert SplitViewSpec.pairs and SplitViewSpec.summary()
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValidationError):
            SplitViewSpec(share=bad)
    with pytest.raises(ValueError, match="share must be in"):
        SplitView(1.0)


def test_a_pairing_view_after_the_first_is_refused_by_the_pipeline() -> None:
    with pytest.raises(ValueError, match="view 1 \\(SplitView\\) makes the two branches"):
        ViewPipeline([MaskView(0.5, 99), SplitView(0.5)], [1.0, 1.0])
