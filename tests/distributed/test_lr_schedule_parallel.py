"""A learning-rate schedule under data parallelism: two processes step with exactly the
rates of one process, and ``lr_scale: linear`` scales by the global batch (the recipe's
``batch_size``), not by the rows each process trains on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from dp_launch import torchrun
from dp_recipe import write_recipe
from rich.console import Console
from test_two_processes import assert_same_metrics, assert_same_training, history

from clue_fw.recipe import load_recipe
from clue_fw.runner import run

pytestmark = pytest.mark.slow


def test_two_processes_follow_one_under_a_scaled_cosine_schedule(tmp_path: Path) -> None:
    schedule = {"schedule": "cosine", "warmup_epochs": 1, "lr_scale": "linear", "min_lr": 1e-5}
    recipe = write_recipe(
        tmp_path,
        pretrain__train={"epochs": 3, "batch_size": 64, **schedule},
        finetune__train={"epochs": 4, "batch_size": 64, "optimizer": "adamw", **schedule},
    )
    one = run(load_recipe(recipe), out=tmp_path / "one", console=Console(file=io.StringIO()))
    result = torchrun(["run", str(recipe), "--out", str(tmp_path / "two")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    two_dir = tmp_path / "two"
    assert json.loads((two_dir / "metrics.json").read_text())["processes"] == 2
    for stage in ("pretrain", "finetune"):
        ours = [row["lr"] for row in history(one.run_dir, stage) if "lr" in row]
        theirs = [row["lr"] for row in history(two_dir, stage) if "lr" in row]
        assert ours == theirs and len(ours) >= 3  # every epoch's rate, to the bit
    # warm-up ends at the peak: lr x 64 / 256, the global batch's scale
    assert history(one.run_dir, "pretrain")[0]["lr"] == 1e-3 * 64 / 256
    assert_same_training(one.run_dir, two_dir)
    assert_same_metrics(one.metrics, json.loads((two_dir / "metrics.json").read_text()))
