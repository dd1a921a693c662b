"""finetune.auxiliary under data-parallel training: two CPU processes (gloo) follow one.

The term's views are drawn for the global batch (GlobalView over the head's training
inputs) and its projector's and predictor's BatchNorm uses global-batch statistics
(GlobalBatchNorm1d), so the per-epoch losses, the logged term and the metrics agree
with a one-process run up to float noise (see test_two_processes.py for why not to the
bit).
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from dp_launch import run_ranks
from dp_recipe import RECIPE
from rich.console import Console

from clue_fw.recipe import load_recipe
from clue_fw.runner import run
from clue_fw.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

USERS = RECIPE["data"]["num_users"]


def test_two_processes_follow_one_with_an_auxiliary_term(tmp_path: Path) -> None:
    data: dict[str, Any] = copy.deepcopy(RECIPE)
    del data["pretrain"]
    data["finetune"]["auxiliary"] = [
        {
            "objective": {"kind": "clue", "projector_dim": 16, "predictor_dim": 8},
            "views": [{"kind": "dropout"}, {"kind": "mask", "probability": 0.5}],
            "weight": 0.5,
        }
    ]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    one = run(load_recipe(recipe), out=tmp_path / "one", console=Console(file=io.StringIO()))
    results = run_ranks(["run", str(recipe), "--out", str(tmp_path / "two")], tmp_path)
    assert all(r.returncode == 0 for r in results), results[0].stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    _, ours = load_checkpoint(one.run_dir / "finetune" / "last.safetensors")
    _, theirs = load_checkpoint(tmp_path / "two" / "finetune" / "last.safetensors")
    rows = [(a, b) for a, b in zip(ours["history"], theirs["history"], strict=True) if a["epoch"]]
    assert rows
    for mine, other in rows:
        for key in ("loss", "head", "aux.clue"):
            assert other[key] == pytest.approx(mine[key], rel=1e-4, abs=1e-5), (key, mine, other)
    for split in ("valid", "test"):
        for name, value in one.metrics[split].items():
            assert two[split][name] == pytest.approx(value, abs=2 / USERS), (split, name)
