"""Tests for clue_fw.data.dataset (k-core, contiguous ids, leave-one-out) and data loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData, build_sequence_data, leave_one_out
from clue_fw.data.loading import load_data
from clue_fw.data.readers import RawSequences
from clue_fw.data.synthetic import generate_sequences
from clue_fw.errors import DataError
from clue_fw.recipe import SequenceFileData, SyntheticData


def raw(rows: dict[int, list[int]]) -> RawSequences:
    return RawSequences(users=list(rows), sequences=list(rows.values()))


def decoded(data: SequenceData) -> dict[int, list[int]]:
    """User (original id) -> item sequence (original ids), via the id maps."""
    out = {}
    for row in range(data.num_users):
        contiguous = data.sequences.row(row).numpy()
        out[int(data.user_ids[row])] = data.item_ids[contiguous - 1].tolist()
    return out


def test_contiguous_ids_sorted_by_original_id() -> None:
    data = build_sequence_data(raw({9: [100, 5, 42, 5], 4: [42, 7, 100]}))
    assert data.num_items == 4
    assert data.item_ids.tolist() == [5, 7, 42, 100]
    assert data.sequences.row(0).tolist() == [4, 1, 3, 1]
    assert data.sequences.row(1).tolist() == [3, 2, 4]
    values = data.sequences.values
    assert int(values.min()) == 1 and int(values.max()) == data.num_items  # 0 stays padding
    assert data.user_ids.tolist() == [9, 4]  # user rows keep input order
    assert decoded(data) == {9: [100, 5, 42, 5], 4: [42, 7, 100]}
    assert data.num_interactions == 7


def test_original_item_zero_is_not_padding() -> None:
    data = build_sequence_data(raw({1: [0, 3, 0]}))
    assert data.sequences.row(0).tolist() == [1, 2, 1]
    assert data.item_ids.tolist() == [0, 3]


def test_users_with_fewer_than_three_items_dropped() -> None:
    rows = {1: [1, 2, 3], 2: [4, 5], 3: [6], 4: [7, 8, 9, 10]}
    for threshold in (0, 1, 3):  # leave-one-out needs 3, whatever the recipe says
        data = build_sequence_data(raw(rows), min_user_interactions=threshold)
        assert data.user_ids.tolist() == [1, 4]
        assert data.item_ids.tolist() == [1, 2, 3, 7, 8, 9, 10]
    data = build_sequence_data(raw(rows), min_user_interactions=4)
    assert decoded(data) == {4: [7, 8, 9, 10]}
    assert data.num_items == 4


def test_k_core_iterates_until_stable() -> None:
    rows = {
        1: [1, 2, 3, 8],
        2: [1, 2, 3],
        3: [6, 7, 5],  # item 5 is rare -> user 3 too short -> items 6, 7 rare
        4: [6, 7, 8],  # -> user 4 too short -> item 8 rare -> user 1 loses it
    }
    data = build_sequence_data(raw(rows), min_user_interactions=3, min_item_interactions=2)
    assert decoded(data) == {1: [1, 2, 3], 2: [1, 2, 3]}
    assert data.num_items == 3
    # the result really is a 3/2-core
    counts = np.bincount(data.sequences.values.numpy())
    assert counts[1:].min() >= 2
    assert int(data.sequences.lengths.min()) >= 3


def test_k_core_with_huge_item_ids() -> None:
    # counting by original id would need an array of 2**62 entries
    big = 2**62
    rows = {1: [big, big + 1, 7], 2: [big, big + 1, 9], 3: [big, 7, big + 1]}
    data = build_sequence_data(raw(rows), min_user_interactions=3, min_item_interactions=2)
    assert decoded(data) == {1: [big, big + 1, 7], 3: [big, 7, big + 1]}
    assert data.item_ids.tolist() == [7, big, big + 1]


def test_nothing_survives_filtering() -> None:
    with pytest.raises(DataError, match="survive filtering"):
        build_sequence_data(raw({1: [1, 2], 2: [3]}), source="tiny.txt")


def test_negative_item_id() -> None:
    with pytest.raises(DataError, match="negative item id"):
        build_sequence_data(raw({1: [1, -2, 3]}))


def test_leave_one_out_targets() -> None:
    data = SequenceData(
        Csr.from_lists([[1, 2, 3], [4, 5, 6, 7, 8], [9, 9, 1, 2]]),
        num_items=9,
        user_ids=np.array([1, 2, 3]),
        item_ids=np.arange(1, 10),
    )
    split = leave_one_out(data)
    assert split.test_target.tolist() == [3, 8, 2]
    assert split.valid_target.tolist() == [2, 7, 1]
    assert [split.train.row(u).tolist() for u in range(3)] == [[1], [4, 5, 6], [9, 9]]
    assert [split.train_valid.row(u).tolist() for u in range(3)] == [
        [1, 2],
        [4, 5, 6, 7],
        [9, 9, 1],
    ]


def test_leave_one_out_on_generated_data() -> None:
    data = build_sequence_data(generate_sequences(num_users=50, num_items=30, seed=4))
    split = leave_one_out(data)
    for u in range(data.num_users):
        full = data.sequences.row(u).tolist()
        assert split.train.row(u).tolist() == full[:-2]
        assert split.train_valid.row(u).tolist() == full[:-1]
        assert int(split.valid_target[u]) == full[-2]
        assert int(split.test_target[u]) == full[-1]


def test_leave_one_out_needs_three_items() -> None:
    data = SequenceData(Csr.from_lists([[1, 2]]), 2, np.array([1]), np.array([1, 2]))
    with pytest.raises(DataError, match="at least 3"):
        leave_one_out(data)


def test_synthetic_generator_is_seeded_and_in_range() -> None:
    a = generate_sequences(num_users=40, num_items=24, min_length=5, max_length=9, seed=1)
    b = generate_sequences(num_users=40, num_items=24, min_length=5, max_length=9, seed=1)
    c = generate_sequences(num_users=40, num_items=24, min_length=5, max_length=9, seed=2)
    assert a == b
    assert a != c
    assert a.users == list(range(1, 41))
    assert all(5 <= len(s) <= 9 for s in a.sequences)
    assert {i for s in a.sequences for i in s} <= set(range(1, 25))


def test_synthetic_stickiness_one_follows_a_cycle() -> None:
    rows = generate_sequences(num_users=30, num_items=20, num_clusters=2, stickiness=1.0, seed=0)
    successor: dict[int, int] = {}
    for seq in rows.sequences:
        for a, b in zip(seq, seq[1:], strict=False):
            assert successor.setdefault(a, b) == b  # a deterministic successor per item


def test_load_sequence_file_through_data_root(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "seq.txt").write_text("5 30 10 20\n6 10 20 30 40\n7 10\n")
    data = load_data(SequenceFileData(path="sub/seq.txt"), root=tmp_path)
    assert decoded(data) == {5: [30, 10, 20], 6: [10, 20, 30, 40]}
    with pytest.raises(DataError, match="not found"):
        load_data(SequenceFileData(path="sub/missing.txt"), root=tmp_path)


def test_load_data_uses_clue_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "seq.txt").write_text("1 1 2 3\n")
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path))
    assert load_data(SequenceFileData(path="seq.txt")).num_users == 1
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="CLUE_DATA_DIR"):
        load_data(SequenceFileData(path="seq.txt"))


def test_load_synthetic() -> None:
    spec = SyntheticData(num_users=30, num_items=12, min_length=4, max_length=6, num_clusters=3)
    data = load_data(spec)
    assert data.num_users == 30
    assert data.num_items <= 12
    assert torch.all(data.sequences.lengths >= 4)


def reference_build(raw: RawSequences, min_user: int, min_item: int) -> SequenceData:
    """build_sequence_data as it was before the vectorised reader (lists, two sorts)."""
    min_user = max(min_user, 3)
    sequences = raw.sequences
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    items = np.fromiter((i for s in sequences for i in s), dtype=np.int64, count=lengths.sum())
    user_of = np.repeat(np.arange(len(raw.users)), lengths)
    dense = np.unique(items, return_inverse=True)[1].reshape(-1)
    keep = np.ones(items.size, dtype=bool)
    while True:
        before = keep.copy()
        counts = np.bincount(dense[keep], minlength=int(dense.max()) + 1)
        keep &= counts[dense] >= min_item
        counts = np.bincount(user_of[keep], minlength=int(user_of.max()) + 1)
        keep &= counts[user_of] >= min_user
        if np.array_equal(before, keep):
            break
    items, user_of = items[keep], user_of[keep]
    item_ids, contiguous = np.unique(items, return_inverse=True)
    kept_users, user_lengths = np.unique(user_of, return_counts=True)
    offsets = np.zeros(kept_users.size + 1, dtype=np.int64)
    np.cumsum(user_lengths, out=offsets[1:])
    values = torch.from_numpy(contiguous.astype(np.int64) + 1)
    return SequenceData(
        Csr(torch.from_numpy(offsets), values),
        int(item_ids.size),
        np.asarray(raw.users, dtype=np.int64)[kept_users],
        item_ids,
    )


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_build_equals_the_reference(seed: int) -> None:
    """Same tensors, dtypes and fingerprint as before, small ids (a lookup table) or
    huge ones (a sort), with and without k-core filtering."""
    from clue_fw.components import TaskData

    rng = np.random.default_rng(seed)
    top = [30, 10**6, 2**62][seed % 3]
    rows = {
        int(u): rng.integers(0, top, rng.integers(1, 12)).tolist()
        for u in rng.choice(10**9, 40, replace=False)
    }
    min_user, min_item = [(3, 1), (4, 2), (3, 3)][seed % 4 % 3]
    expected = reference_build(raw(rows), min_user, min_item)
    if expected.num_users == 0:  # nothing survives: refused with a message
        with pytest.raises(DataError, match="survive filtering"):
            build_sequence_data(raw(rows), min_user, min_item)
        return
    data = build_sequence_data(raw(rows), min_user, min_item)
    assert decoded(data) == decoded(expected)
    for got, want in (
        (data.sequences.offsets, expected.sequences.offsets),
        (data.sequences.values, expected.sequences.values),
    ):
        assert got.dtype == want.dtype and torch.equal(got, want)
    for got_array, want_array in (
        (data.user_ids, expected.user_ids),
        (data.item_ids, expected.item_ids),
    ):
        assert got_array.dtype == want_array.dtype and np.array_equal(got_array, want_array)
    assert TaskData(data).fingerprint() == TaskData(expected).fingerprint()
