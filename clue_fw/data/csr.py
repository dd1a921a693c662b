"""Ragged integer sequences as two flat tensors (compressed sparse rows).

Every user's sequence lives in one flat ``values`` tensor; ``offsets[u]`` and
``offsets[u + 1]`` delimit user ``u``. All operations below are vectorised: no
Python loop runs over users, so they work unchanged on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Csr:
    """Ragged rows: ``values[offsets[r]:offsets[r + 1]]`` is row ``r``."""

    offsets: torch.Tensor  # [R + 1], int64, offsets[0] == 0
    values: torch.Tensor  # [offsets[-1]], int64

    @classmethod
    def from_lists(cls, rows: list[list[int]]) -> Csr:
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
        torch.cumsum(lengths, 0, out=offsets[1:])
        values = torch.tensor([v for r in rows for v in r], dtype=torch.long)
        return cls(offsets, values)

    @property
    def num_rows(self) -> int:
        return self.offsets.numel() - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def row(self, index: int) -> torch.Tensor:
        return self.values[self.offsets[index] : self.offsets[index + 1]]

    def to(self, device: torch.device | str) -> Csr:
        return Csr(self.offsets.to(device), self.values.to(device))

    def drop_last(self, count: int) -> Csr:
        """Remove the last ``count`` values of every row (rows must be long enough)."""
        lengths = self.lengths - count
        if bool((lengths < 0).any()):
            raise ValueError(f"some rows have fewer than {count} values")
        if count <= 0:
            return self.take_prefix(lengths)
        # One boolean mask over the values: memory and time linear in the values,
        # without the per-value row index take_prefix builds.
        keep = torch.ones(self.values.numel(), dtype=torch.bool, device=self.values.device)
        ends = self.offsets[1:]
        for back in range(1, count + 1):
            keep[ends - back] = False
        steps = torch.arange(self.num_rows + 1, device=self.offsets.device) * count
        return Csr(self.offsets - steps, self.values[keep])

    def take_prefix(self, lengths: torch.Tensor) -> Csr:
        """Keep the first ``lengths[r]`` values of each row ``r``."""
        keep_offsets = torch.zeros_like(self.offsets)
        torch.cumsum(lengths, 0, out=keep_offsets[1:])
        rows = torch.repeat_interleave(torch.arange(self.num_rows, device=lengths.device), lengths)
        within = torch.arange(int(keep_offsets[-1]), device=lengths.device) - keep_offsets[rows]
        return Csr(keep_offsets, self.values[self.offsets[rows] + within])

    def select_rows(self, rows: torch.Tensor) -> Csr:
        """A new Csr made of rows ``rows`` (in that order)."""
        lengths = self.lengths[rows]
        offsets = torch.zeros(rows.numel() + 1, dtype=torch.long, device=rows.device)
        torch.cumsum(lengths, 0, out=offsets[1:])
        _, values = self.batch_pairs(rows)
        return Csr(offsets, values)

    def last(self, back: int = 0) -> torch.Tensor:
        """``[R]``: the value ``back`` places before the end of every row."""
        return self.values[self.offsets[1:] - 1 - back]

    def gather_windows(self, rows: torch.Tensor, ends: torch.Tensor, width: int) -> torch.Tensor:
        """``[E, width]`` windows of row ``rows[e]`` ending (exclusive) at ``ends[e]``.

        Windows are left-padded with 0 where they reach before the row's start.
        """
        positions = ends.unsqueeze(1) - width + torch.arange(width, device=ends.device)
        valid = positions >= 0
        flat = self.offsets[rows].unsqueeze(1) + positions.clamp(min=0)
        flat = flat.clamp(max=max(self.values.numel() - 1, 0))
        if self.values.numel() == 0:
            return torch.zeros(positions.shape, dtype=torch.long, device=ends.device)
        return torch.where(valid, self.values[flat], torch.zeros_like(flat))

    def recent_windows(self, width: int) -> torch.Tensor:
        """``[R, width]``: the last ``width`` values of every row, left-padded."""
        rows = torch.arange(self.num_rows, device=self.offsets.device)
        return self.gather_windows(rows, self.lengths, width)

    def covering_windows(self, width: int, stride: int, min_end: int = 1) -> torch.Tensor:
        """Windows ending at ``len, len - stride, len - 2*stride, ...`` (each ``>= min_end``).

        With ``stride == width`` every value of a row lies in exactly one window;
        with ``stride == 1`` every prefix of length ``>= min_end`` ends one window.
        """
        lengths = self.lengths
        counts = torch.where(
            lengths >= min_end,
            torch.div(lengths - min_end, stride, rounding_mode="floor") + 1,
            torch.zeros_like(lengths),
        )
        rows = torch.repeat_interleave(torch.arange(self.num_rows, device=lengths.device), counts)
        first = torch.zeros_like(counts)
        torch.cumsum(counts, 0, out=first)
        first = first - counts
        step = torch.arange(rows.numel(), device=lengths.device) - first[rows]
        ends = lengths[rows] - step * stride
        return self.gather_windows(rows, ends, width)

    def batch_pairs(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch_row, value)`` pairs for every value of the given rows, flattened."""
        begin = self.offsets[rows]
        lengths = self.offsets[rows + 1] - begin
        total = int(lengths.sum())
        batch_row = torch.repeat_interleave(
            torch.arange(rows.numel(), device=rows.device), lengths, output_size=total
        )
        # value j of the batch comes from self.values[j + begin[r] - (values before row r)]
        shift = begin - (torch.cumsum(lengths, 0) - lengths)
        return batch_row, self.values[torch.arange(total, device=rows.device) + shift[batch_row]]
