"""Row operations the built-in views share, on left-padded ``[B, n]`` item batches."""

from __future__ import annotations

import torch

FRACTION_SCALE = 1_000_000
"""A view's fraction is read to 6 decimals, so that ``floor(fraction * L)`` is exact."""


def floor_fraction(lengths: torch.Tensor, fraction: float) -> torch.Tensor:
    """``floor(fraction * L)`` for each row length ``L``, in integers: exact on every
    device, with no float rounding at whole numbers (``0.3 * 10`` is 3, not 2)."""
    return lengths * round(fraction * FRACTION_SCALE) // FRACTION_SCALE


def random_span(
    lengths: torch.Tensor, span: torch.Tensor, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A contiguous span of ``span[b]`` of the ``lengths[b]`` real items of each row of a
    left-padded ``[B, n]`` batch, its start drawn uniformly over the ``L - span + 1``
    choices (one ``torch.rand`` of shape ``[B]`` from ``generator``).

    Returns ``(first, inside)``: the span's first position ``[B]`` (a column index) and
    the ``[B, n]`` mask of its positions, which lie on real items only. ``span`` must be in
    ``0..L`` for every row.
    """
    choices = lengths - span + 1
    draws = torch.rand(lengths.shape, generator=generator, device=lengths.device)
    first = n - lengths + torch.minimum((draws * choices).long(), choices - 1)  # [B]
    position = torch.arange(n, device=lengths.device)
    inside = (position >= first.unsqueeze(1)) & (position < (first + span).unsqueeze(1))
    return first, inside


def left_pack(items: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The items of ``items`` ``[B, n]`` where ``keep`` is true, in order, re-packed to
    the right of each row (left-padded with 0): a stable sort moves the dropped
    positions left and the kept ones right."""
    kept_sorted, order = torch.sort(keep.to(torch.uint8), dim=1, stable=True)
    return torch.where(kept_sorted.bool(), items.gather(1, order), torch.zeros_like(items))
