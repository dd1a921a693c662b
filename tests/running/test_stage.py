"""Tests for clue_fw.running.stage.Stage.training: the one set-up of a training stage that
pre-training and fine-tuning share."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from clue_fw.recipe import TrainSpec
from clue_fw.running.identity import RunIdentity
from clue_fw.running.run_directory import RunDirectory
from clue_fw.running.stage import Stage
from clue_fw.training.report import Reporter


def test_training_stage_optimises_the_unfrozen_parameters_for_the_recipe_epochs(
    tmp_path: Path,
) -> None:
    module = nn.ModuleDict({"encoder": nn.Linear(3, 3), "head": nn.Linear(3, 2)})
    module["encoder"].requires_grad_(False)  # probing: the encoder is frozen before
    directory = RunDirectory.follower(tmp_path, {}, RunIdentity("a" * 32, "b" * 64), fresh=True)
    train = TrainSpec(epochs=4, lr=0.01, optimizer="sgd")
    stage = Stage.training(
        "finetune",
        module,
        train,
        directory,
        Reporter(Console(quiet=True), None),
        seed=1,
        device=torch.device("cpu"),
        extra_fields={"best": float},
        patience=2,
    )
    (group,) = stage.optimizer.param_groups
    assert [id(p) for p in group["params"]] == [id(p) for p in module["head"].parameters()]
    assert isinstance(stage.optimizer, torch.optim.SGD) and group["lr"] == 0.01
    assert (stage.name, stage.epochs, stage.patience, stage.seed) == ("finetune", 4, 2, 1)
    assert stage.extra_fields == {"best": float}
    assert stage.dir == tmp_path / "finetune"
