"""finetune.mode probe_then_full with finetune.encoder_lr_scale under data-parallel
training: two CPU processes (gloo) follow one process through both phases (the frozen
encoder of the probe phase and the two parameter groups are the same on every process)."""

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


def test_two_processes_follow_one_through_lpft(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path,
        finetune__head={
            "kind": "next_item",
            "loss_positions": "ur",
            "exclude_seen": "none",
            "tie_weights": False,
        },
        finetune__mode="probe_then_full",
        finetune__probe_epochs=2,
        finetune__encoder_lr_scale=0.1,
        finetune__train={
            "epochs": 4,
            "batch_size": 64,
            "optimizer": "adamw",
            "weight_decay": 0.1,
        },
    )
    one = run(load_recipe(recipe), out=tmp_path / "one", console=Console(file=io.StringIO()))
    result = torchrun(["run", str(recipe), "--out", str(tmp_path / "two")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    two_dir = tmp_path / "two"
    two = json.loads((two_dir / "metrics.json").read_text())
    assert two["processes"] == 2
    for run_dir in (one.run_dir, two_dir):
        phases = [row.get("phase") for row in history(run_dir, "finetune")]
        assert phases == [None, "probe", "probe", "full", "full"]
    assert_same_training(one.run_dir, two_dir)
    assert_same_metrics(one.metrics, two)
