"""Tests for clue_fw.data.csr against plain-Python reference implementations."""

from __future__ import annotations

import random

import pytest
import torch

from clue_fw.data.csr import Csr

# --------------------------------------------------------------------------- references


def ref_window(row: list[int], end: int, width: int) -> list[int]:
    values = row[max(0, end - width) : end]
    return [0] * (width - len(values)) + values


def ref_recent(rows: list[list[int]], width: int) -> list[list[int]]:
    return [ref_window(row, len(row), width) for row in rows]


def ref_covering(rows: list[list[int]], width: int, stride: int, min_end: int) -> list[list[int]]:
    out = []
    for row in rows:
        end = len(row)
        while end >= min_end:
            out.append(ref_window(row, end, width))
            end -= stride
    return out


def ref_pairs(rows: list[list[int]], picked: list[int]) -> tuple[list[int], list[int]]:
    batch_row, values = [], []
    for position, r in enumerate(picked):
        for value in rows[r]:
            batch_row.append(position)
            values.append(value)
    return batch_row, values


def ragged(seed: int, num_rows: int = 30, max_len: int = 14, empty: bool = True) -> list[list[int]]:
    rng = random.Random(seed)
    low = 0 if empty else 1
    # values start at 1 so that a 0 in a window can only be padding
    return [[rng.randint(1, 99) for _ in range(rng.randint(low, max_len))] for _ in range(num_rows)]


def rows_of(csr: Csr) -> list[list[int]]:
    return [csr.row(r).tolist() for r in range(csr.num_rows)]


SEEDS = [0, 1, 2, 3]


# --------------------------------------------------------------------------- tests


def test_from_lists_layout() -> None:
    csr = Csr.from_lists([[5, 6], [], [7, 8, 9]])
    assert csr.offsets.tolist() == [0, 2, 2, 5]
    assert csr.values.tolist() == [5, 6, 7, 8, 9]
    assert csr.lengths.tolist() == [2, 0, 3]
    assert csr.num_rows == 3
    assert rows_of(csr) == [[5, 6], [], [7, 8, 9]]
    assert csr.offsets.dtype == torch.long and csr.values.dtype == torch.long


def test_recent_windows_left_padding() -> None:
    csr = Csr.from_lists([[1, 2, 3, 4, 5], [7], [8, 9]])
    assert csr.recent_windows(3).tolist() == [[3, 4, 5], [0, 0, 7], [0, 8, 9]]
    assert csr.recent_windows(1).tolist() == [[5], [7], [9]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("width", [1, 4, 20])
def test_recent_windows_match_reference(seed: int, width: int) -> None:
    rows = ragged(seed)
    assert Csr.from_lists(rows).recent_windows(width).tolist() == ref_recent(rows, width)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("width", "stride", "min_end"), [(4, 4, 1), (5, 2, 1), (3, 1, 2), (6, 5, 2)]
)
def test_covering_windows_match_reference(seed: int, width: int, stride: int, min_end: int) -> None:
    rows = ragged(seed)
    got = Csr.from_lists(rows).covering_windows(width, stride=stride, min_end=min_end)
    assert got.tolist() == ref_covering(rows, width, stride, min_end)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("width", [1, 3, 5])
def test_stride_equal_width_covers_every_value_exactly_once(seed: int, width: int) -> None:
    rows = ragged(seed)
    csr = Csr.from_lists(rows)
    windows = csr.covering_windows(width, stride=width, min_end=1)
    # rebuild each row from its windows: positions (not just values) must appear once
    rebuilt: list[list[int]] = []
    index = 0
    for row in rows:
        count = (len(row) + width - 1) // width
        mine = windows[index : index + count].flip(0).flatten().tolist()  # oldest window first
        index += count
        rebuilt.append([v for v in mine if v != 0])
    assert index == windows.shape[0]
    assert rebuilt == rows
    assert int((windows != 0).sum()) == sum(len(r) for r in rows)


@pytest.mark.parametrize("seed", SEEDS)
def test_stride_one_gives_every_prefix(seed: int) -> None:
    rows = ragged(seed, max_len=8)
    width = 8  # no row is longer, so every window holds a whole prefix
    windows = Csr.from_lists(rows).covering_windows(width, stride=1, min_end=1)
    got = sorted(tuple(v for v in w if v != 0) for w in windows.tolist())
    expected = sorted(tuple(row[:end]) for row in rows for end in range(1, len(row) + 1))
    assert got == expected


def test_covering_windows_of_empty_values() -> None:
    csr = Csr.from_lists([[], []])
    assert csr.covering_windows(3, stride=1, min_end=1).shape == (0, 3)
    assert csr.recent_windows(3).tolist() == [[0, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("count", [0, 1, 2])
def test_drop_last_matches_reference(seed: int, count: int) -> None:
    rows = [r for r in ragged(seed) if len(r) >= count]
    dropped = Csr.from_lists(rows).drop_last(count)
    assert rows_of(dropped) == [r[: len(r) - count] for r in rows]
    assert dropped.offsets[0] == 0 and dropped.offsets[-1] == dropped.values.numel()


def test_drop_last_too_short_row() -> None:
    with pytest.raises(ValueError, match="fewer than 2"):
        Csr.from_lists([[1, 2, 3], [4]]).drop_last(2)


@pytest.mark.parametrize("seed", SEEDS)
def test_take_prefix_and_last(seed: int) -> None:
    rows = ragged(seed, empty=False)
    csr = Csr.from_lists(rows)
    rng = random.Random(seed + 100)
    keep = [rng.randint(0, len(r)) for r in rows]
    assert rows_of(csr.take_prefix(torch.tensor(keep))) == [
        r[:k] for r, k in zip(rows, keep, strict=True)
    ]
    assert csr.last().tolist() == [r[-1] for r in rows]
    long_rows = [r for r in rows if len(r) >= 2]
    assert Csr.from_lists(long_rows).last(1).tolist() == [r[-2] for r in long_rows]


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_pairs_match_reference(seed: int) -> None:
    rows = ragged(seed)
    rng = random.Random(seed)
    picked = [rng.randrange(len(rows)) for _ in range(12)]  # repeats and any order
    batch_row, values = Csr.from_lists(rows).batch_pairs(torch.tensor(picked))
    assert (batch_row.tolist(), values.tolist()) == ref_pairs(rows, picked)


def test_gather_windows_explicit() -> None:
    csr = Csr.from_lists([[1, 2, 3, 4], [5, 6]])
    windows = csr.gather_windows(torch.tensor([0, 0, 1]), torch.tensor([4, 2, 1]), 3)
    assert windows.tolist() == [[2, 3, 4], [0, 1, 2], [0, 0, 5]]
