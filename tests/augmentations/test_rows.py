"""Tests for clue_fw.augmentations.rows: the span draw that crop and permute share."""

from __future__ import annotations

import torch

from clue_fw.augmentations.crop import CropView
from clue_fw.augmentations.permute import PermuteView
from clue_fw.augmentations.rows import floor_fraction, left_pack, random_span


def _batch(rows: int = 200, n: int = 12, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    lengths = torch.randint(0, n + 1, (rows,))
    items = torch.randint(1, 50, (rows, n))
    return items * (torch.arange(n) >= (n - lengths).unsqueeze(1))


def test_random_span_matches_a_row_by_row_reference() -> None:
    """One draw per row, start uniform over the L - span + 1 choices, mask on real items."""
    items = _batch()
    n = items.shape[1]
    lengths = (items != 0).sum(dim=1)
    span = floor_fraction(lengths, 0.4)
    first, inside = random_span(lengths, span, n, torch.Generator().manual_seed(3))
    draws = torch.rand(lengths.shape, generator=torch.Generator().manual_seed(3))
    rows = zip(lengths.tolist(), span.tolist(), draws.tolist(), strict=True)
    for row, (length, k, draw) in enumerate(rows):
        choices = length - k + 1
        start = min(int(draw * choices), choices - 1)
        expected = [n - length + start <= j < n - length + start + k for j in range(n)]
        assert first[row].item() == n - length + start
        assert inside[row].tolist() == expected
    assert not (inside & (items == 0)).any()  # never on padding


def test_every_start_is_drawn() -> None:
    lengths = torch.full((4000,), 6)
    span = torch.full((4000,), 2)
    first, _ = random_span(lengths, span, 8, torch.Generator().manual_seed(0))
    assert sorted(set(first.tolist())) == [2, 3, 4, 5, 6]  # n - L .. n - span


def test_crop_and_permute_draw_their_span_through_random_span() -> None:
    """Both views remove (crop) or shuffle (permute) exactly the span random_span draws
    from the same generator state."""
    items = _batch(seed=1)
    n = items.shape[1]
    lengths = (items != 0).sum(dim=1)
    removed = torch.minimum(floor_fraction(lengths, 0.3), (lengths - 1).clamp(min=0))
    _, span = random_span(lengths, removed, n, torch.Generator().manual_seed(7))
    dropped = CropView(0.3)(items, torch.Generator().manual_seed(7))
    assert torch.equal(dropped, left_pack(items, (items != 0) & ~span))
    kept = CropView(0.3, "keep")(items, torch.Generator().manual_seed(7))
    _, keep = random_span(lengths, lengths - removed, n, torch.Generator().manual_seed(7))
    assert torch.equal(kept, left_pack(items, keep))
    shuffled = PermuteView(0.5)(items, torch.Generator().manual_seed(7))
    _, inside = random_span(
        lengths, floor_fraction(lengths, 0.5), n, torch.Generator().manual_seed(7)
    )
    assert torch.equal(shuffled[~inside], items[~inside])
    assert torch.equal(shuffled.sort(dim=1).values, items.sort(dim=1).values)
