"""Tests for ``label_fraction`` of the user-level heads (profile, cold_start): nested
labelled subsets of the training users, unchanged validation and test users."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from clue_fw.components import BuildContext
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.errors import DataError
from clue_fw.heads.cold_start import ColdStartSpec
from clue_fw.heads.profile import ProfileSpec
from clue_fw.heads.user_level import labelled_count, labelled_train, split_users

USERS = 200
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)


def user_data(users: int = USERS) -> SequenceData:
    rows = [[u + 1, u + 1, u + 1] for u in range(users)]  # row u's items name it
    return SequenceData(
        Csr.from_lists(rows), users, np.arange(1, users + 1), np.arange(1, users + 1)
    )


def profile_spec(folder: Path, classes: int = 2, **fields: object) -> ProfileSpec:
    lines = ["user,label"] + [f"{u},c{u % classes}" for u in range(1, USERS + 1)]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return ProfileSpec(labels={"path": "labels.csv"}, **fields)


def cold_start_spec(folder: Path, **fields: object) -> ColdStartSpec:
    lines = [f"{u} {100 + (u * 3 + k) % 11}" for u in range(1, USERS + 1) for k in range(4)]
    (folder / "target.txt").write_text("\n".join(lines) + "\n")
    return ColdStartSpec(target={"format": "pairs", "path": "target.txt"}, **fields)


def split_users_of(spec: object, folder: Path) -> list[list[int]]:
    """The data rows of each split's examples, in example order (rows may repeat)."""
    task_data = spec.prepare(user_data(), folder)  # type: ignore[attr-defined]
    task = spec.make_task(task_data, BuildContext(USERS, 4), "recent")  # type: ignore[attr-defined]
    return [
        [int(r) - 1 for r in task.split(name).tensors["items"][:, -1]]
        for name in ("train", "valid", "test")
    ]


# --------------------------------------------------------------------------- counting


@pytest.mark.parametrize(
    ("train", "fraction", "count"),
    [
        (4832, 0.01, 49),  # ML-1M profile: ceil(48.32)
        (4832, 0.05, 242),
        (4832, 0.1, 484),
        (4832, 0.25, 1208),
        (4832, 1.0, 4832),
        (3370, 0.01, 34),  # ML-1M cold start
        (4830, 0.1, 483),  # exact: 0.1 * 4830 is 483.00000000000006 in floats
        (100, 0.07, 7),  # 0.07 * 100 is 7.000000000000001 in floats
        (1, 0.01, 1),
        (3, 0.5, 2),
    ],
)
def test_labelled_count_is_the_exact_ceiling(train: int, fraction: float, count: int) -> None:
    assert labelled_count(train, fraction) == count


def test_labelled_count_refuses_to_leave_no_user() -> None:
    with pytest.raises(DataError, match="label_fraction: 0.5 of 0 training users"):
        labelled_count(0, 0.5)
    assert labelled_count(0, 1.0) == 0  # the default changes nothing, even here


def test_labelled_subsets_are_nested_prefixes() -> None:
    train = split_users(1000, seed=7)[0]
    subsets = [labelled_train(train, f) for f in FRACTIONS]
    assert [s.numel() for s in subsets] == [math.ceil(f * 800) for f in FRACTIONS]
    for small, large in zip(subsets, subsets[1:], strict=False):
        assert set(small.tolist()) < set(large.tolist())
    assert labelled_train(train, 1.0) is train


# --------------------------------------------------------------------------- the heads


@pytest.mark.parametrize("make", [profile_spec, cold_start_spec])
def test_fractions_are_nested_with_the_same_valid_and_test(make: object, tmp_path: Path) -> None:
    full_train, full_valid, full_test = split_users_of(make(tmp_path), tmp_path)  # type: ignore[operator]
    previous: set[int] = set()
    for fraction in FRACTIONS:
        spec = make(tmp_path, label_fraction=fraction)  # type: ignore[operator]
        train, valid, test = split_users_of(spec, tmp_path)
        assert valid == full_valid and test == full_test
        users = set(train)
        assert len(users) == math.ceil(fraction * len(set(full_train)))
        assert previous <= users <= set(full_train)
        previous = users


@pytest.mark.parametrize("make", [profile_spec, cold_start_spec])
def test_subsets_do_not_follow_the_run_seed(make: object, tmp_path: Path) -> None:
    spec = make(tmp_path, label_fraction=0.05)  # type: ignore[operator]
    found = []
    for global_seed in (0, 99):
        torch.manual_seed(global_seed)
        found.append(split_users_of(spec, tmp_path)[0])
    assert found[0] == found[1]
    other = make(tmp_path, label_fraction=0.05, split_seed=1)  # type: ignore[operator]
    assert set(split_users_of(other, tmp_path)[0]) != set(found[0])


def test_cold_start_keeps_every_pair_of_a_labelled_user(tmp_path: Path) -> None:
    full = split_users_of(cold_start_spec(tmp_path), tmp_path)[0]
    part = split_users_of(cold_start_spec(tmp_path, label_fraction=0.1), tmp_path)[0]
    assert part and set(part) < set(full)
    for user in set(part):
        assert part.count(user) == full.count(user) >= 1


@pytest.mark.parametrize("make", [profile_spec, cold_start_spec])
def test_default_is_all_training_users(make: object, tmp_path: Path) -> None:
    default = make(tmp_path)  # type: ignore[operator]
    assert default.label_fraction == 1.0
    explicit = make(tmp_path, label_fraction=1)  # type: ignore[operator]
    task_data = default.prepare(user_data(), tmp_path)
    context = BuildContext(USERS, 4)
    a = default.make_task(task_data, context, "recent")
    b = explicit.make_task(task_data, context, "recent")
    for name in ("train", "valid", "test"):
        for key, tensor in a.split(name).tensors.items():
            assert torch.equal(tensor, b.split(name).tensors[key])


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), float("inf"), "half"])
@pytest.mark.parametrize("make", [profile_spec, cold_start_spec])
def test_fraction_out_of_range_is_refused(make: object, bad: object, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="label_fraction"):
        make(tmp_path, label_fraction=bad)  # type: ignore[operator]


def test_recipe_error_names_the_key(tmp_path: Path) -> None:
    from clue_fw.errors import RecipeError
    from clue_fw.recipe import validate_recipe

    recipe = {
        "data": {"format": "sequences", "path": "seq.txt", "max_len": 8},
        "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2},
        "finetune": {
            "head": {"kind": "profile", "labels": {"path": "x.csv"}, "label_fraction": 0},
            "train": {"epochs": 1},
        },
    }
    with pytest.raises(RecipeError, match=r"finetune\.head.*label_fraction.*\(0, 1\]"):
        validate_recipe(recipe)


def test_profile_with_classes_missing_from_the_labelled_users(tmp_path: Path) -> None:
    """21 classes, 2 labelled training users: the head keeps every class's output and
    the majority is the labelled users' one."""
    spec = profile_spec(tmp_path, classes=21, label_fraction=0.01)
    task_data = spec.prepare(user_data(), tmp_path)
    task = spec.make_task(task_data, BuildContext(USERS, 4), "recent")
    labels = task.train.tensors["label"]
    assert labels.numel() == 2 and len(set(labels.tolist())) <= 2

    class Encoder(torch.nn.Module):
        dim = 4

    head = spec.build(BuildContext(USERS, 4), Encoder(), task_data)  # type: ignore[arg-type]
    assert head.classifier.out_features == 21
    assert int(head.majority) in labels.tolist()


def test_tiny_labelled_set_with_a_larger_batch_runs_end_to_end(tmp_path: Path) -> None:
    """5% of 80 * 0.8 users: 4 labelled users in one batch of 64; early stopping as usual."""
    from clue_fw import run

    lines, labels = [], []
    for user in range(1, 81):
        cluster = user % 2
        items = [1 + cluster * 10 + (user + step) % 10 for step in range(8)]
        lines.append(" ".join(map(str, [user, *items])))
        labels.append(f"{user},{'FM'[cluster]}")
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "gender.csv").write_text("user,label\n" + "\n".join(labels) + "\n")
    recipe = {
        "seed": 0,
        "device": "cpu",
        "data": {"format": "sequences", "path": "seq.txt", "max_len": 8},
        "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2},
        "finetune": {
            "head": {"kind": "profile", "labels": {"path": "gender.csv"}, "label_fraction": 0.05},
            "train": {"epochs": 30, "batch_size": 64},
            "patience": 2,
        },
    }
    result = run(recipe, out=tmp_path / "run", data_root=tmp_path)
    written = json.loads((result.run_dir / "metrics.json").read_text())
    assert "label_fraction: 0.05" in (result.run_dir / "recipe.yaml").read_text()
    assert written["epochs"] < 30  # stopped early on validation accuracy
    assert set(written["test"]) == {"acc", "macro_f1", "majority_acc"}
    log = (result.run_dir / "run.log").read_text()
    assert "on 4 training examples" in log


@pytest.mark.parametrize("make", [profile_spec, cold_start_spec])
def test_default_fraction_is_left_out_of_dumps(make: object, tmp_path: Path) -> None:
    """Recipes that do not set it keep their recipe.yaml and recipe sha256 of before."""
    default = make(tmp_path)  # type: ignore[operator]
    assert "label_fraction" not in default.model_dump(mode="json")
    part = make(tmp_path, label_fraction=0.25)  # type: ignore[operator]
    dumped = part.model_dump(mode="json")
    assert dumped["label_fraction"] == 0.25
    assert type(part).model_validate(dumped) == part
    assert type(default).model_validate(default.model_dump(mode="json")) == default
