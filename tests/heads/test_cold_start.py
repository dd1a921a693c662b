"""Tests for clue_fw.heads.cold_start: task construction, ranking metrics, a CLI run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from clue_fw.components import BuildContext, EncoderOutput, SequenceEncoder
from clue_fw.data.csr import Csr
from clue_fw.data.dataset import SequenceData
from clue_fw.data.examples import ExampleSet
from clue_fw.errors import DataError
from clue_fw.heads.cold_start import ColdStartData, ColdStartHead, ColdStartSpec
from clue_fw.metrics.ranking import reference_metrics
from clue_fw.training.loop import evaluate

USERS = 24
MAX_LEN = 3
SOURCE_GENRES = ("Drama", "Comedy")
MIXED = 200  # Animation|Drama: in neither domain (mixed: drop)


def movies_dat() -> str:
    lines = [f"{m}::Source {m}::{SOURCE_GENRES[m % 2]}" for m in range(1, 41)]
    lines += [f"{m}::Target {m}::Animation" for m in range(101, 106)]
    lines += [f"{MIXED}::Both::Animation|Drama"]
    return "\n".join(lines) + "\n"


def source_of(user: int) -> list[int]:
    """User ``user``'s five source movies; the last three are unique to the user."""
    return [(user + j) % 40 + 1 for j in range(5)]


def targets_of(user: int) -> list[int]:
    return [101 + user % 5, 101 + (user + 2) % 5]


SOURCE_ITEMS = len({m for user in range(1, USERS + 1) for m in source_of(user)})  # 28


def genre_sequences() -> dict[int, list[int]]:
    sequences = {}
    for user in range(1, USERS + 1):
        s, t = source_of(user), targets_of(user)
        sequences[user] = [s[0], t[0], s[1], MIXED, s[2], s[3], t[1], s[4]]
    return sequences


def sequence_data(sequences: dict[int, list[int]]) -> SequenceData:
    originals = np.array(sorted({i for row in sequences.values() for i in row}), dtype=np.int64)
    new_id = {int(o): n for n, o in enumerate(originals, start=1)}
    rows = [[new_id[i] for i in row] for row in sequences.values()]
    return SequenceData(
        Csr.from_lists(rows), len(originals), np.array(list(sequences), np.int64), originals
    )


def genre_task(folder: Path, **fields: object) -> tuple[ColdStartData, dict[str, list[tuple]]]:
    """Prepare a genre cold-start task; return its data and, per split, the
    (source window in original ids, target movie id) of every instance."""
    (folder / "movies.dat").write_text(movies_dat(), encoding="utf-8")
    spec = ColdStartSpec(
        target={"format": "genres", "movies": "movies.dat", "target_genres": ["Animation"]},
        **fields,
    )
    task_data = spec.prepare(sequence_data(genre_sequences()), folder)
    context = BuildContext(task_data.sequences.num_items, MAX_LEN)
    task = spec.make_task(task_data, context, "recent")
    source_ids = task_data.sequences.item_ids
    target_ids = spec.domains(sequence_data(genre_sequences()), folder).target_item_ids
    instances = {}
    for name in ("train", "valid", "test"):
        tensors = task.split(name).tensors
        instances[name] = [
            (tuple(int(source_ids[i - 1]) for i in row if i), int(target_ids[t]))
            for row, t in zip(tensors["items"].tolist(), tensors["target"].tolist(), strict=True)
        ]
    return task_data, instances


def test_instances_are_source_windows_and_target_pairs(tmp_path: Path) -> None:
    task_data, instances = genre_task(tmp_path, max_per_user=None)
    got = Counter(pair for split in instances.values() for pair in split)
    expected = Counter(
        (tuple(source_of(user)[-MAX_LEN:]), target)
        for user in range(1, USERS + 1)
        for target in targets_of(user)
    )
    assert got == expected  # each (user, target) pair is one instance, input = source window
    assert sum(got.values()) == 2 * USERS == int(task_data.pair_users.numel())
    # the source window never holds a target movie or the dropped mixed movie
    for split in instances.values():
        for window, _ in split:
            assert all(m <= 40 for m in window)


def test_users_are_split_not_pairs(tmp_path: Path) -> None:
    _, instances = genre_task(tmp_path, max_per_user=None)
    users = {name: Counter(window for window, _ in split) for name, split in instances.items()}
    assert not set(users["train"]) & set(users["valid"])
    assert not set(users["train"]) & set(users["test"])
    assert not set(users["valid"]) & set(users["test"])
    # both target pairs of a user land in the same split
    assert all(count == 2 for split in users.values() for count in split.values())
    assert [len(users[name]) for name in ("train", "valid", "test")] == [20, 1, 3]


def test_per_user_cap_and_stats(tmp_path: Path) -> None:
    task_data, instances = genre_task(tmp_path, max_per_user=1, per_user="first")
    got = sorted(pair for split in instances.values() for pair in split)
    expected = sorted(
        (tuple(source_of(user)[-MAX_LEN:]), targets_of(user)[0]) for user in range(1, USERS + 1)
    )
    assert got == expected  # the first target interaction of every user
    assert task_data.stats() == {
        "source users": USERS,
        "source items": SOURCE_ITEMS,
        "source interactions": 5 * USERS,
        "target items": 5,
        "target users": USERS,
        "target pairs": USERS,
        "movies dropped (genres on both sides)": 1,
        "interactions dropped (movies on both sides)": USERS,
    }


def test_pretraining_reads_the_whole_source_domain(tmp_path: Path) -> None:
    task_data, _ = genre_task(tmp_path)
    spec = ColdStartSpec(target={"format": "genres", "movies": "movies.dat"})
    pretrain = spec.pretrain_sequences(task_data)
    assert pretrain.values.numel() == 5 * USERS  # all source items, no held-out ones
    assert int(pretrain.values.max()) == task_data.sequences.num_items == SOURCE_ITEMS


def test_too_few_target_users(tmp_path: Path) -> None:
    data = sequence_data({u: source_of(u) for u in range(1, 6)})
    (tmp_path / "target.txt").write_text("1 500\n2 501\n1 502\n")
    spec = ColdStartSpec(target={"format": "pairs", "path": "target.txt"})
    with pytest.raises(DataError, match="Only 2 users have target interactions"):
        spec.prepare(data, tmp_path)


# --------------------------------------------------------------------------- metrics

NUM_TARGETS = 5


class LastItemOneHot(SequenceEncoder):
    """User vector: one-hot code of the row's last item minus one (items 1..dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_items = dim
        self.dim = dim
        self.max_len = MAX_LEN
        self.item_embedding = nn.Embedding(dim + 2, dim)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = nn.functional.one_hot(items[:, -1] - 1, self.dim).to(torch.float32)
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


# SCORES[u][t]: the score of target item t for a user whose last source item is u + 1
SCORES = torch.tensor(
    [
        [5.0, 4.0, 3.0, 2.0, 1.0],
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [0.0, 9.0, 9.0, 1.0, 2.0],
    ]
)


def fixed_head(
    ks: list[int], ties: str = "pessimistic", scores: torch.Tensor = SCORES
) -> tuple[ColdStartHead, LastItemOneHot]:
    encoder = LastItemOneHot(3)
    head = ColdStartHead(encoder, NUM_TARGETS, "ur", ks, ties)  # type: ignore[arg-type]
    with torch.no_grad():
        head.output.weight.copy_(scores.T)
        head.output.bias.zero_()
    return head, encoder


# (last source item, target) and its rank among all 5 target items by hand; in row 4
# user 3's items 1 and 2 both score 9: rank 2 pessimistic, 1.5 on average
ROWS = [(1, 0), (1, 3), (2, 4), (3, 1), (3, 4)]
EXAMPLES = ExampleSet(
    {
        "items": torch.tensor([[0, 7, last] for last, _ in ROWS]),
        "target": torch.tensor([target for _, target in ROWS]),
    }
)


def test_ranks_over_all_target_items() -> None:
    head, encoder = fixed_head([1, 3])
    ranks = [1, 4, 1, 2, 3]
    metrics = evaluate(head, encoder, EXAMPLES, batch_size=2)
    for k in (1, 3):
        for name in ("mrr", "recall", "ndcg"):
            expected = np.mean([reference_metrics(r, k)[name] for r in ranks])
            assert metrics[f"{name}@{k}"] == pytest.approx(expected)
    assert metrics["mrr@3"] == pytest.approx((1 + 0 + 1 + 1 / 2 + 1 / 3) / 5)
    assert metrics["recall@1"] == pytest.approx(2 / 5)
    assert evaluate(head, encoder, EXAMPLES, batch_size=1) == pytest.approx(metrics)


def test_average_ties_take_the_expectation() -> None:
    head, encoder = fixed_head([1, 3], ties="average")
    metrics = evaluate(head, encoder, EXAMPLES, batch_size=2)
    # row 4: rank 1 or 2 with probability 1/2 each
    assert metrics["recall@1"] == pytest.approx((1 + 0 + 1 + 0.5 + 0) / 5)
    assert metrics["mrr@3"] == pytest.approx((1 + 0 + 1 + 0.75 + 1 / 3) / 5)


def test_constant_model_gets_nothing_or_chance() -> None:
    constant = torch.full((3, NUM_TARGETS), 0.25)
    head, encoder = fixed_head([1, 3], scores=constant)
    assert set(evaluate(head, encoder, EXAMPLES, batch_size=2).values()) == {0.0}
    head, encoder = fixed_head([1, 3], ties="average", scores=constant)
    metrics = evaluate(head, encoder, EXAMPLES, batch_size=2)
    assert metrics["recall@1"] == pytest.approx(1 / NUM_TARGETS, abs=1e-12)
    assert metrics["recall@3"] == pytest.approx(3 / NUM_TARGETS, abs=1e-12)


def test_nan_scores_are_refused() -> None:
    from clue_fw.errors import EvaluationError

    class NanForThree(LastItemOneHot):
        """NaN user vectors for inputs whose last source item is 3 (rows 4 and 5)."""

        def forward(self, items: torch.Tensor) -> EncoderOutput:
            output = super().forward(items)
            user = torch.where((items[:, -1] == 3).unsqueeze(1), float("nan"), output.user)
            return EncoderOutput(output.states, user)

    head, _ = fixed_head([1])
    encoder = NanForThree(3)
    with pytest.raises(
        EvaluationError,
        match=r"valid split: batch 2/3 \(batch size 2\) has 1 row .*\(and 1 later batch\)",
    ):
        evaluate(head, encoder, EXAMPLES, batch_size=2, split="valid")


def test_loss_is_softmax_cross_entropy_over_target_items() -> None:
    head, encoder = fixed_head([10])
    batch = {"items": torch.tensor([[0, 1, 1], [1, 2, 3]]), "target": torch.tensor([0, 2])}
    expected = nn.functional.cross_entropy(SCORES[[0, 2]], batch["target"])
    assert head.loss(encoder, batch).loss.item() == pytest.approx(expected.item())


def test_spec_defaults_and_monitor() -> None:
    spec = ColdStartSpec(ks=[20, 5, 5])
    assert spec.ks == [5, 20]
    assert spec.ties == "pessimistic" and ColdStartSpec(ties="average").ties == "average"
    with pytest.raises(ValueError, match="'pessimistic' or 'average'"):
        ColdStartSpec(ties="random")
    assert "exclude_seen" not in ColdStartSpec.model_fields  # no target-domain history
    assert spec.monitor_default == "mrr@5"
    assert spec.max_per_user == 3 and spec.per_user == "uniform"
    assert spec.target.format == "genres" and spec.target.mixed == "drop"
    with pytest.raises(ValueError):
        ColdStartSpec(ks=[0])
    with pytest.raises(ValueError):
        ColdStartSpec(max_per_user=0)


# --------------------------------------------------------------------------- end to end


def test_cold_start_cli_run_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clue_fw.cli import main

    data = tmp_path / "data"
    data.mkdir()
    users = range(1, 61)
    (data / "source.txt").write_text(
        "".join(f"{u} " + " ".join(str((u + j) % 30 + 1) for j in range(7)) + "\n" for u in users)
    )
    (data / "target.txt").write_text(
        "user item\n" + "".join(f"{u},{900 + (u + k) % 8}\n" for u in users for k in range(2))
    )
    recipe = {
        "seed": 0,
        "device": "cpu",
        "data": {"format": "sequences", "path": "source.txt", "max_len": 6},
        "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2},
        "pretrain": {
            "objective": {"kind": "clue", "projector_dim": 16, "predictor_dim": 8},
            "train": {"epochs": 1, "batch_size": 32},
        },
        "finetune": {
            "head": {
                "kind": "cold_start",
                "target": {"format": "pairs", "path": "target.txt"},
                "max_per_user": 2,
                "per_user": "first",
            },
            "train": {"epochs": 2, "batch_size": 32},
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.setenv("CLUE_DATA_DIR", str(data))
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run")])
    assert info.value.code in (0, None), capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert set(metrics[split]) == {"mrr@10", "recall@10", "ndcg@10"}
    assert metrics["monitor"] == "mrr@10"
    assert metrics["task"]["target pairs"] == 120
    assert metrics["task"]["target users"] == 60
    assert metrics["task"]["target items"] == 8
    assert metrics["task"]["source users"] == 60
