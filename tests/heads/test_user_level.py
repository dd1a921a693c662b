"""Tests for clue_fw.heads.user_level and components.user_vectors: the user split and
the user vector that the profile and cold_start heads share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clue_fw.components import BuildContext, EncoderOutput, user_vectors
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.heads.cold_start import ColdStartSpec
from clue_fw.heads.profile import ProfileSpec
from clue_fw.heads.user_level import split_users


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(100, (80, 5, 15)), (1000, (800, 50, 150)), (20, (16, 1, 3)), (3, (1, 1, 1)), (2, (2, 0, 0))],
)
def test_split_sizes(count: int, sizes: tuple[int, int, int]) -> None:
    parts = split_users(count, seed=0)
    assert tuple(part.numel() for part in parts) == sizes


@pytest.mark.parametrize("count", [3, 7, 100, 1001])
def test_split_is_a_partition(count: int) -> None:
    train, valid, test = split_users(count, seed=3)
    everything = torch.cat([train, valid, test])
    assert sorted(everything.tolist()) == list(range(count))  # disjoint and covering


def test_split_depends_on_its_seed_only() -> None:
    torch.manual_seed(1)
    first = split_users(200, seed=5)
    torch.manual_seed(2)
    torch.rand(17)  # the global generator is elsewhere: the split must not move
    again = split_users(200, seed=5)
    other = split_users(200, seed=6)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
    assert set(first[2].tolist()) != set(other[2].tolist())


def test_split_is_shuffled() -> None:
    train, valid, test = split_users(100, seed=0)
    assert train.tolist() != sorted(train.tolist())
    assert test.tolist() != list(range(85, 100))


# --------------------------------------------------------------------------- heads' splits

USERS = 40


def user_data() -> SequenceData:
    rows = [[u + 1, u + 1, u + 1] for u in range(USERS)]  # row u's items name it
    return SequenceData(
        Csr.from_lists(rows), USERS, np.arange(1, USERS + 1), np.arange(1, USERS + 1)
    )


def split_rows(task: object) -> list[list[int]]:
    return [
        sorted(int(r) - 1 for r in task.split(name).tensors["items"][:, -1])  # type: ignore[attr-defined]
        for name in ("train", "valid", "test")
    ]


def profile_spec(folder: Path, **fields: object) -> ProfileSpec:
    lines = ["user,label"] + [f"{u},{'ab'[u % 2]}" for u in range(1, USERS + 1)]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return ProfileSpec(labels={"path": "labels.csv"}, **fields)


def cold_start_spec(folder: Path, **fields: object) -> ColdStartSpec:
    lines = [f"{u} {100 + (u * 3 + k) % 11}" for u in range(1, USERS + 1) for k in range(4)]
    (folder / "target.txt").write_text("\n".join(lines) + "\n")
    return ColdStartSpec(target={"format": "pairs", "path": "target.txt"}, **fields)


@pytest.mark.parametrize("make", [profile_spec, cold_start_spec])
def test_head_split_ignores_the_run_seed(make: object, tmp_path: Path) -> None:
    spec = make(tmp_path)  # type: ignore[operator]
    context = BuildContext(USERS, 4)
    splits = []
    for global_seed in (0, 1, 12345):
        torch.manual_seed(global_seed)
        task_data = spec.prepare(user_data(), tmp_path)
        task = spec.make_task(task_data, context, "recent")
        splits.append(split_rows(task))
        if isinstance(spec, ColdStartSpec):  # the per-user draw of k is seeded too
            splits[-1].append(task_data.pair_items.tolist())
    assert splits[0] == splits[1] == splits[2]
    train, valid, test = splits[0][:3]
    assert len(set(train)) + len(set(valid)) + len(set(test)) == USERS
    assert not (set(train) & set(valid) or set(train) & set(test) or set(valid) & set(test))


@pytest.mark.parametrize("make", [profile_spec, cold_start_spec])
def test_head_split_follows_split_seed(make: object, tmp_path: Path) -> None:
    context = BuildContext(USERS, 4)
    tests = []
    for split_seed in (0, 1):
        spec = make(tmp_path, split_seed=split_seed)  # type: ignore[operator]
        task = spec.make_task(spec.prepare(user_data(), tmp_path), context, "recent")
        tests.append(set(split_rows(task)[2]))
    assert tests[0] != tests[1]


def test_user_level_heads_refuse_all_history(tmp_path: Path) -> None:
    for spec in (profile_spec(tmp_path), cold_start_spec(tmp_path)):
        assert spec.history_problem("recent") is None
        assert "use history: recent" in (spec.history_problem("all") or "")
        assert spec.probe_ready is None


# --------------------------------------------------------------------------- user vectors


def test_mean_user_vector_is_the_masked_mean_of_the_states() -> None:
    torch.manual_seed(0)
    items = torch.tensor([[0, 0, 3, 4], [5, 6, 7, 8], [0, 0, 0, 0], [0, 9, 0, 2]])
    states = torch.randn(4, 4, 3)
    user = torch.randn(4, 3)
    output = EncoderOutput(states, user)
    mean = user_vectors(output, items, "mean")
    expected = torch.stack(
        [
            states[0, 2:].mean(dim=0),
            states[1].mean(dim=0),
            torch.zeros(3),  # a row without items: zeros, not NaN
            states[3, [1, 3]].mean(dim=0),
        ]
    )
    assert torch.allclose(mean, expected)
    assert torch.isfinite(mean).all()
    assert user_vectors(output, items, "ur") is user
    assert torch.equal(user_vectors(output, items), user)  # 'ur' is the default


def test_unknown_user_vector_is_an_error() -> None:
    output = EncoderOutput(torch.zeros(1, 2, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="'ur' or 'mean'"):
        user_vectors(output, torch.ones(1, 2, dtype=torch.long), "max")
