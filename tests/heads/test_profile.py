"""Tests for clue_fw.heads.profile: label alignment, splits, metrics and an end-to-end run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from clue_fw.components import BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.data.examples import ExampleSet
from clue_fw.errors import DataError
from clue_fw.heads.profile import ProfileData, ProfileHead, ProfileSpec
from clue_fw.heads.user_level import split_users
from clue_fw.training.loop import evaluate

MAX_LEN = 4


def user_data(user_ids: list[int]) -> SequenceData:
    """Row ``r`` (user ``user_ids[r]``) is ``[r + 1, r + 1]``: its item names the row."""
    rows = [[r + 1, r + 1] for r in range(len(user_ids))]
    return SequenceData(
        Csr.from_lists(rows),
        num_items=len(user_ids),
        user_ids=np.array(user_ids, dtype=np.int64),
        item_ids=np.arange(1, len(user_ids) + 1),
    )


def write_labels(folder: Path, labels: dict[int, str], name: str = "labels.csv") -> Path:
    lines = ["user,label"] + [f"{user},{label}" for user, label in labels.items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def prepare(folder: Path, data: SequenceData, **labels: Any) -> ProfileData:
    spec = ProfileSpec(labels={"path": "labels.csv", **labels})
    return spec.prepare(data, folder)


def task_rows(spec: ProfileSpec, task_data: ProfileData) -> dict[str, list[int]]:
    """Data rows of each split's examples (read back from the row-naming items)."""
    task = spec.make_task(task_data, BuildContext(task_data.sequences.num_items, MAX_LEN), "recent")
    return {
        name: [int(r) - 1 for r in task.split(name).tensors["items"][:, -1]]
        for name in ("train", "valid", "test")
    }


# --------------------------------------------------------------------------- labels and users


def test_labels_follow_the_data_users_and_ignore_unknown_users(tmp_path: Path) -> None:
    data = user_data([10, 20, 30, 40])
    # user 99 is not in the data: ignored, and its class "X" is no class of the task
    write_labels(tmp_path, {40: "M", 10: "F", 99: "X", 30: "M", 20: "F"})
    task_data = prepare(tmp_path, data)
    assert task_data.classes == ("F", "M")
    assert task_data.labels.tolist() == [0, 0, 1, 1]
    assert task_data.stats() == {
        "labelled users": 4,
        "unlabelled users (skipped)": 0,
        "classes": {"F": 2, "M": 2},
    }


def test_missing_labels_are_an_error_by_default(tmp_path: Path) -> None:
    data = user_data([1, 2, 3, 4, 5, 6])
    path = write_labels(tmp_path, {1: "F", 2: "M", 3: "F", 5: "M"})
    with pytest.raises(DataError) as info:
        prepare(tmp_path, data)
    message = str(info.value)
    assert f"2 of 6 users have no label in {path} (e.g. users 4, 6)" in message


def test_missing_skip_keeps_unlabelled_users_out_of_the_task_only(tmp_path: Path) -> None:
    data = user_data([1, 2, 3, 4, 5, 6, 7, 8])
    write_labels(tmp_path, {1: "F", 2: "M", 3: "F", 5: "M", 7: "F", 99: "M"})
    spec = ProfileSpec(labels={"path": "labels.csv", "missing": "skip"})
    task_data = spec.prepare(data, tmp_path)
    assert task_data.labels.tolist() == [0, 1, 0, -1, 1, -1, 0, -1]
    assert task_data.stats()["labelled users"] == 5
    assert task_data.stats()["unlabelled users (skipped)"] == 3
    rows = task_rows(spec, task_data)
    in_task = sorted(rows["train"] + rows["valid"] + rows["test"])
    assert in_task == [0, 1, 2, 4, 6]  # rows of users 1, 2, 3, 5, 7: each exactly once
    # ... while pre-training reads every user's whole sequence, unlabelled users included
    pretrain = spec.pretrain_sequences(task_data)
    assert torch.equal(pretrain.offsets, data.sequences.offsets)
    assert torch.equal(pretrain.values, data.sequences.values)


@pytest.mark.parametrize("missing", ["error", "skip"])
def test_label_file_of_other_users_is_a_clear_error(tmp_path: Path, missing: str) -> None:
    data = user_data([1, 2, 3, 4])
    path = write_labels(tmp_path, {1001: "F", 1002: "M", 1003: "F"})
    with pytest.raises(DataError) as info:
        prepare(tmp_path, data, missing=missing)
    message = str(info.value)
    assert str(path) in message
    if missing == "error":
        assert "4 of 4 users have no label" in message
    else:
        assert "No user of the data has a label" in message
    assert "made for this dataset" in message


@pytest.mark.parametrize("missing", ["error", "skip"])
def test_a_single_class_is_an_error(tmp_path: Path, missing: str) -> None:
    data = user_data([1, 2, 3])
    # user 9 (unknown) has the only other label: the data's users still have one class
    path = write_labels(tmp_path, {1: "F", 2: "F", 3: "F", 9: "M"})
    with pytest.raises(DataError) as info:
        prepare(tmp_path, data, missing=missing)
    assert f"{path} gives the users a single class ('F')" in str(info.value)


def test_fewer_than_three_labelled_users_is_an_error(tmp_path: Path) -> None:
    # two labelled users cannot fill train, valid and test: the validation split would
    # be empty (this used to fail with a KeyError in the metrics instead)
    path = write_labels(tmp_path, {1: "F", 2: "M", 99: "F"})
    with pytest.raises(DataError) as info:
        prepare(tmp_path, user_data([1, 2, 3, 4, 5, 6]), missing="skip")
    assert f"Only 2 users of the data have a label in {path}" in str(info.value)
    write_labels(tmp_path, {1: "F", 2: "M", 3: "F"})
    task_data = prepare(tmp_path, user_data([1, 2, 3, 4, 5, 6]), missing="skip")
    assert task_data.stats()["labelled users"] == 3


def test_missing_label_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Data file not found: .*absent.csv"):
        ProfileSpec(labels={"path": "absent.csv"}).prepare(user_data([1, 2, 3]), tmp_path)


def test_u_user_age_brackets_are_numeric_classes(tmp_path: Path) -> None:
    data = user_data([1, 2, 3, 4, 5])
    (tmp_path / "u.user").write_text(
        "1|24|M|technician|85711\n2|17|F|student|94043\n3|56|M|writer|32067\n"
        "4|50|M|other|15213\n5|9|F|student|01002\n",
        encoding="utf-8",
    )
    spec = ProfileSpec(labels={"path": "u.user", "column": "age"})
    task_data = spec.prepare(data, tmp_path)
    assert task_data.classes == ("1", "18", "50", "56")
    assert [task_data.classes[i] for i in task_data.labels] == ["18", "1", "56", "50", "1"]


def test_numeric_classes_sort_by_value_others_alphabetically(tmp_path: Path) -> None:
    data = user_data([1, 2, 3, 4])
    (tmp_path / "users.dat").write_text(
        "1::F::1::10::48067\n2::M::56::2::70072\n3::M::25::16::55117\n4::F::45::2::02460\n",
        encoding="utf-8",
    )
    occupation = ProfileSpec(labels={"path": "users.dat", "column": "occupation"})
    task_data = occupation.prepare(data, tmp_path)
    assert task_data.classes == ("2", "10", "16")  # not "10" < "16" < "2"
    assert task_data.labels.tolist() == [1, 0, 2, 0]
    gender = ProfileSpec(labels={"path": "users.dat", "column": "gender"}).prepare(data, tmp_path)
    assert gender.classes == ("F", "M")


@pytest.mark.parametrize(
    ("odd", "order"),
    [
        ("\u00b2", ("-3", "10", "2", "\u00b2")),  # superscript two: isdigit() but not int()
        ("--5", ("--5", "-3", "10", "2")),
        ("9" * 5000, ("-3", "10", "2", "9" * 5000)),  # int() refuses > 4300 digits
        ("9" * 19, ("-3", "10", "2", "9" * 19)),  # past 18 digits: text
    ],
)
def test_odd_labels_sort_as_text(tmp_path: Path, odd: str, order: tuple[str, ...]) -> None:
    write_labels(tmp_path, {1: "10", 2: "2", 3: odd, 4: "-3"})
    task_data = prepare(tmp_path, user_data([1, 2, 3, 4]))
    assert task_data.classes == order


def test_signed_numeric_labels_sort_by_value(tmp_path: Path) -> None:
    write_labels(tmp_path, {1: "10", 2: "2", 3: "-7", 4: "9" * 18})
    task_data = prepare(tmp_path, user_data([1, 2, 3, 4]))
    assert task_data.classes == ("-7", "2", "10", "9" * 18)


def test_explicit_format_that_does_not_match_the_file(tmp_path: Path) -> None:
    write_labels(tmp_path, {1: "F", 2: "M"})
    spec = ProfileSpec(labels={"path": "labels.csv", "format": "users_dat"})
    with pytest.raises(DataError) as info:
        spec.prepare(user_data([1, 2]), tmp_path)
    message = str(info.value)
    assert "labels.csv, line 1: expected 5 fields" in message
    assert "Is this the right label format?" in message


# --------------------------------------------------------------------------- metrics


class LastItemOneHot(SequenceEncoder):
    """User vector: the one-hot code of the row's last item minus one (items 1..dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_items = dim
        self.dim = dim
        self.max_len = MAX_LEN
        self.item_embedding = nn.Embedding(dim + 2, dim)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = nn.functional.one_hot(items[:, -1] - 1, self.dim).to(torch.float32)
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


def identity_head(classes: int, majority: int) -> tuple[ProfileHead, LastItemOneHot]:
    """A head whose prediction for a row is its last item minus one."""
    encoder = LastItemOneHot(classes)
    head = ProfileHead(encoder, classes, majority, "ur")
    with torch.no_grad():
        head.classifier.weight.copy_(torch.eye(classes))
        head.classifier.bias.zero_()
    return head, encoder


def plain_macro_f1(labels: list[int], predicted: list[int]) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions."""
    scores = []
    for c in sorted(set(labels) | set(predicted)):
        tp = sum(1 for y, p in zip(labels, predicted, strict=True) if y == p == c)
        n_pred = sum(1 for p in predicted if p == c)
        n_true = sum(1 for y in labels if y == c)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        scores.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    return sum(scores) / len(scores)


# class 3 is only predicted, class 4 neither labelled nor predicted (left out of macro-F1)
LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 1]
PREDICTED = [0, 0, 1, 1, 2, 2, 2, 0, 3]


def examples(labels: list[int], predicted: list[int]) -> ExampleSet:
    items = torch.tensor([[0, 0, 1, p + 1] for p in predicted])
    return ExampleSet({"items": items, "label": torch.tensor(labels)})


def test_metrics_match_a_hand_computation() -> None:
    head, encoder = identity_head(classes=5, majority=2)
    metrics = evaluate(head, encoder, examples(LABELS, PREDICTED), batch_size=100)
    assert metrics["acc"] == pytest.approx(5 / 9)
    # per class F1 = 2 tp / (true + predicted): 4/6, 2/5, 4/6 and 0 (class 3, predicted
    # once, never right); class 4 is neither labelled nor predicted and does not count
    assert metrics["macro_f1"] == pytest.approx((4 / 6 + 2 / 5 + 4 / 6 + 0) / 4)
    assert metrics["macro_f1"] == pytest.approx(plain_macro_f1(LABELS, PREDICTED))
    assert metrics["majority_acc"] == pytest.approx(3 / 9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_matches_plain_python_on_random_cases(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=30).tolist()
    predicted = rng.integers(0, 6, size=30).tolist()
    head, encoder = identity_head(classes=7, majority=0)
    metrics = evaluate(head, encoder, examples(labels, predicted), batch_size=7)
    assert metrics["macro_f1"] == pytest.approx(plain_macro_f1(labels, predicted))
    agree = sum(1 for y, p in zip(labels, predicted, strict=True) if y == p)
    assert metrics["acc"] == pytest.approx(agree / 30)


def test_nan_user_vectors_are_refused() -> None:
    from clue_fw.errors import EvaluationError

    class NanForTwo(LastItemOneHot):
        """NaN user vectors for rows whose last item is 2."""

        def forward(self, items: torch.Tensor) -> EncoderOutput:
            output = super().forward(items)
            user = torch.where((items[:, -1] == 2).unsqueeze(1), float("nan"), output.user)
            return EncoderOutput(output.states, user)

    head, _ = identity_head(classes=5, majority=2)
    encoder = NanForTwo(5)
    # rows 2 and 3 (PREDICTED == 1) are NaN: the first lies in batch 1 of 3 (size 3)
    with pytest.raises(EvaluationError, match=r"test split: batch 1/3 \(batch size 3\) has 1 row"):
        evaluate(head, encoder, examples(LABELS, PREDICTED), batch_size=3, split="test")


def test_metrics_do_not_depend_on_batching() -> None:
    head, encoder = identity_head(classes=5, majority=1)
    full = evaluate(head, encoder, examples(LABELS, PREDICTED), batch_size=len(LABELS))
    for size in (1, 3):
        assert evaluate(head, encoder, examples(LABELS, PREDICTED), batch_size=size) == full
    sums: dict[str, torch.Tensor] = {}
    for batch in examples(LABELS, PREDICTED).batches(2):
        for name, value in head.metric_sums(encoder, batch).items():
            sums[name] = sums[name] + value if name in sums else value
    assert head.finalize(sums) == full


def test_majority_class_comes_from_the_training_split(tmp_path: Path) -> None:
    users = list(range(1, 21))
    train, valid, test = split_users(20, seed=0)
    assert (len(train), len(valid), len(test)) == (16, 1, 3)
    # the held-out users and 7 training users are "b": "b" is the overall majority
    # (11 of 20) but "a" is the training majority (9 of 16)
    labels = {users[i]: "a" for i in train[:9].tolist()}
    labels.update({users[i]: "b" for i in train[9:].tolist() + valid.tolist() + test.tolist()})
    write_labels(tmp_path, labels)
    spec = ProfileSpec(labels={"path": "labels.csv"})
    data = user_data(users)
    task_data = spec.prepare(data, tmp_path)
    assert Counter(labels.values()).most_common(1)[0][0] == "b"
    head = spec.build(BuildContext(data.num_items, MAX_LEN), LastItemOneHot(20), task_data)
    assert task_data.classes[int(head.majority)] == "a"
    task = spec.make_task(task_data, BuildContext(data.num_items, MAX_LEN), "recent")
    sums = head.metric_sums(LastItemOneHot(20), next(task.test.batches(100)))
    assert head.finalize(sums)["majority_acc"] == 0.0  # every test user is "b"


def test_empty_split_has_no_metrics() -> None:
    head, encoder = identity_head(classes=3, majority=0)
    empty = {
        "count": torch.tensor(0.0, dtype=torch.float64),
        "correct": torch.tensor(0.0, dtype=torch.float64),
        "majority_correct": torch.tensor(0.0, dtype=torch.float64),
        "true": torch.zeros(3, dtype=torch.float64),
        "predicted": torch.zeros(3, dtype=torch.float64),
        "true_positive": torch.zeros(3, dtype=torch.float64),
    }
    assert head.finalize(empty) == {}


def test_loss_is_cross_entropy_and_trains_the_classifier() -> None:
    torch.manual_seed(0)
    head, encoder = identity_head(classes=3, majority=0)
    nn.init.normal_(head.classifier.weight)
    batch = examples([0, 1, 2, 1], [2, 0, 1, 0]).tensors
    logits = head.logits(encoder, batch["items"])
    expected = nn.functional.cross_entropy(logits, batch["label"])
    assert head.loss(encoder, batch).loss.item() == pytest.approx(expected.item())
    optimizer = torch.optim.SGD(head.parameters(), lr=1.0)
    first = head.loss(encoder, batch).loss.item()
    for _ in range(20):
        optimizer.zero_grad()
        head.loss(encoder, batch).loss.backward()
        optimizer.step()
    assert head.loss(encoder, batch).loss.item() < 0.5 * first


def test_mean_user_vector_is_used_when_asked() -> None:
    encoder = LastItemOneHot(3)
    head = ProfileHead(encoder, 3, 0, "mean")
    items = torch.tensor([[0, 1, 2]])
    # the states are zeros: the mean user vector gives the bias only
    assert torch.equal(head.logits(encoder, items), head.classifier.bias.detach().unsqueeze(0))


# --------------------------------------------------------------------------- end to end


def test_profile_run_end_to_end(tmp_path: Path) -> None:
    from clue_fw import run

    lines, labels = [], {}
    for user in range(1, 81):
        cluster = user % 2
        items = [1 + cluster * 10 + (user + step) % 10 for step in range(8)]
        lines.append(" ".join(map(str, [user, *items])))
        labels[user] = "F" if cluster else "M"
    (tmp_path / "seq.txt").write_text("\n".join(lines) + "\n")
    write_labels(tmp_path, labels, "gender.csv")
    recipe = {
        "seed": 0,
        "device": "cpu",
        "data": {"format": "sequences", "path": "seq.txt", "max_len": 8},
        "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2},
        "finetune": {
            "head": {"kind": "profile", "labels": {"path": "gender.csv"}},
            "train": {"epochs": 2, "batch_size": 32},
        },
    }
    result = run(recipe, out=tmp_path / "run", data_root=tmp_path)
    written = json.loads((result.run_dir / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert set(written[split]) == {"acc", "macro_f1", "majority_acc"}
    assert written["monitor"] == "acc"
    assert written["task"] == {
        "labelled users": 80,
        "unlabelled users (skipped)": 0,
        "classes": {"F": 40, "M": 40},
    }
