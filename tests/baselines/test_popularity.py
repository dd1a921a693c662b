"""Tests for clue_fw.baselines.popularity and `clue baseline`: the popularity model ranks
as a plain loop does, and its metrics equal the next_item head's evaluation path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from cli_main import main_exit
from torch import nn

from clue_fw.baselines.popularity import (
    PopularityRanker,
    evaluate_popularity,
    evaluate_recipe,
    item_counts,
)
from clue_fw.components import BuildContext, EncoderOutput, SequenceEncoder, TaskData
from clue_fw.data.dataset import build_sequence_data, leave_one_out
from clue_fw.data.readers import read_sequence_file
from clue_fw.data.synth import write_synthetic_sequences
from clue_fw.errors import RecipeError
from clue_fw.heads.next_item import NextItemSpec
from clue_fw.metrics.ranking import finalize_sums, reference_metrics
from clue_fw.training.loop import evaluate

KS = [1, 5, 10]
PROTOCOLS = [
    (exclude, ties) for exclude in ("history", "none") for ties in ("pessimistic", "average")
]


@pytest.fixture(scope="module")
def task_data(tmp_path_factory: pytest.TempPathFactory) -> TaskData:
    """300 users over 60 items with repeats: duplicates in histories, repeated targets,
    items never trained on and many tied counts."""
    path = tmp_path_factory.mktemp("pop") / "seq.txt"
    write_synthetic_sequences(path, 300, 60, seed=5, mean_length=12, repeat_rate=0.3)
    return TaskData(build_sequence_data(read_sequence_file(path)))


def brute_force(task_data: TaskData, split: str, exclude: str, ties: str) -> dict[str, float]:
    """Every user's target ranked by a plain loop over every item."""
    data = task_data.sequences
    loo = leave_one_out(data)
    history, targets = (
        (loo.train, loo.valid_target) if split == "valid" else (loo.train_valid, loo.test_target)
    )
    counts = [0] * (data.num_items + 1)
    for value in loo.train.values.tolist():
        counts[value] += 1
    totals = {f"{name}@{k}": 0.0 for k in KS for name in ("mrr", "recall", "ndcg")}
    for user in range(data.num_users):
        target = int(targets[user])
        seen = set(history.row(user).tolist()) if exclude == "history" else set()
        if target in seen:
            continue  # the target scores -inf: a miss
        better = sum(
            1 for i in range(1, data.num_items + 1) if i not in seen and counts[i] > counts[target]
        )
        tied = sum(
            1
            for i in range(1, data.num_items + 1)
            if i not in seen and i != target and counts[i] == counts[target]
        )
        ranks = (
            [better + tied + 1] if ties == "pessimistic" else range(better + 1, better + tied + 2)
        )
        for k in KS:
            for name in ("mrr", "recall", "ndcg"):
                per_rank = [reference_metrics(rank, k)[name] for rank in ranks]
                totals[f"{name}@{k}"] += sum(per_rank) / len(per_rank)
    return {key: value / data.num_users for key, value in totals.items()}


@pytest.mark.parametrize(("exclude", "ties"), PROTOCOLS)
def test_metrics_equal_a_brute_force_loop(task_data: TaskData, exclude: str, ties: str) -> None:
    spec = NextItemSpec(exclude_seen=exclude, ties=ties, ks=KS)
    metrics = evaluate_popularity(task_data, spec, batch_size=64)
    for split in ("valid", "test"):
        expected = brute_force(task_data, split, exclude, ties)
        assert metrics[split] == pytest.approx(expected, abs=1e-12)
    assert metrics["valid"]["recall@10"] > 0  # not a degenerate comparison


class CountScores(SequenceEncoder):
    """An encoder whose user vector is the popularity counts and whose item embeddings are
    one-hot: through the next_item head (tied weights) item i scores counts[i]."""

    def __init__(self, counts: torch.Tensor) -> None:
        super().__init__()
        self.num_items = counts.numel() - 1
        self.dim = counts.numel()
        self.max_len = 1
        self.item_embedding = nn.Embedding(self.dim, self.dim)
        with torch.no_grad():
            self.item_embedding.weight.copy_(torch.eye(self.dim))
        self.counts = counts.to(torch.float32)

    def forward(self, items: torch.Tensor) -> EncoderOutput:
        user = self.counts.expand(items.shape[0], -1)
        return EncoderOutput(torch.zeros(*items.shape, self.dim), user)


@pytest.mark.parametrize(("exclude", "ties"), PROTOCOLS)
def test_metrics_equal_the_next_item_heads_evaluation(
    task_data: TaskData, exclude: str, ties: str
) -> None:
    """The same numbers as NextItemHead.metric_sums + training.loop.evaluate give."""
    data = task_data.sequences
    spec = NextItemSpec(exclude_seen=exclude, ties=ties, ks=KS)
    counts = item_counts(leave_one_out(data).train, data.num_items)
    encoder = CountScores(counts)
    context = BuildContext(num_items=data.num_items, max_len=1)
    head = spec.build(context, encoder, task_data)
    task = spec.make_task(task_data, context, "recent")
    ours = evaluate_popularity(task_data, spec, batch_size=100)
    ranker = PopularityRanker(counts, exclude, KS, ties)  # type: ignore[arg-type]
    for split in ("valid", "test"):
        assert ours[split] == pytest.approx(
            evaluate(head, encoder, task.split(split), 77, split=split), abs=1e-12
        )
        for batch in task.split(split).batches(50):
            fast, dense = ranker.metric_sums(batch), ranker.dense_metric_sums(batch)
            assert finalize_sums(fast) == pytest.approx(finalize_sums(dense), abs=1e-12)


def test_counts_come_from_the_training_part_only() -> None:
    from clue_fw.data.csr import Csr
    from clue_fw.data.dataset import SequenceData

    rows = [[1, 2, 3, 4], [1, 2, 5, 6]]
    data = SequenceData(Csr.from_lists(rows), 6, torch.arange(2).numpy(), torch.arange(6).numpy())
    counts = item_counts(leave_one_out(data).train, 6)
    assert counts.tolist() == [0, 2, 2, 0, 0, 0, 0]


def test_ranker_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="exclude_seen"):
        PopularityRanker(torch.ones(3), "all", [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ties"):
        PopularityRanker(torch.ones(3), "none", [1], "optimistic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="counts"):
        PopularityRanker(torch.ones(1), "none", [1])


# --------------------------------------------------------------------------- recipe and CLI


def write_recipe(folder: Path, head: dict[str, Any]) -> Path:
    write_synthetic_sequences(folder / "synth" / "s.txt", 200, 50, seed=1, overwrite=True)
    recipe = {
        "data": {"format": "sequences", "path": "synth/s.txt", "max_len": 10},
        "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2},
        "finetune": {"head": head, "train": {"epochs": 1}},
    }
    path = folder / "pop.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_cli_prints_and_writes_the_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path))
    recipe = write_recipe(tmp_path, {"kind": "next_item", "ks": [5, 10]})
    code, out, err = main_exit(["baseline", str(recipe), "--set", "finetune.head.ks=[10]"], capsys)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["model"] == "popularity" and printed["recipe"] == "pop"
    assert printed["protocol"] == {"exclude_seen": "history", "ties": "pessimistic", "ks": [10]}
    assert printed["data"]["users"] == 200
    assert set(printed["valid"]) == {"mrr@10", "recall@10", "ndcg@10"}
    target = tmp_path / "pop.json"
    code, out, err = main_exit(["baseline", str(recipe), "--out", str(target)], capsys)
    assert code == 0, err
    assert out.strip() == str(target)
    written = json.loads(target.read_text())
    assert written["test"]["recall@10"] == pytest.approx(printed["test"]["recall@10"])
    assert set(written["test"]) == {f"{m}@{k}" for m in ("mrr", "recall", "ndcg") for k in (5, 10)}


def test_cli_refuses_a_recipe_without_a_next_item_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUE_DATA_DIR", str(tmp_path))
    recipe = write_recipe(tmp_path, {"kind": "profile", "labels": {"path": "labels.csv"}})
    code, _, err = main_exit(["baseline", str(recipe)], capsys)
    assert code == 2
    assert "clue baseline evaluates next-item recommendation" in " ".join(err.split())


def test_evaluate_recipe_names_the_head_kind(tmp_path: Path) -> None:
    from clue_fw.recipe import load_recipe

    recipe = load_recipe(write_recipe(tmp_path, {"kind": "profile", "labels": {"path": "l.csv"}}))
    with pytest.raises(RecipeError, match="finetune.head.kind is 'profile'"):
        evaluate_recipe(recipe, tmp_path)
