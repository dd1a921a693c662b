"""``pretrain.objective.batchnorm``: global (synchronised) or local (per-process) BatchNorm
statistics in a data-parallel run; no difference in one process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from dp_launch import torchrun
from dp_recipe import write_recipe
from rich.console import Console
from torch import nn

from clue_fw.distributed import GlobalBatchNorm1d
from clue_fw.distributed.processes import Distributed
from clue_fw.objectives.specs import ClueSpec
from clue_fw.recipe import load_recipe
from clue_fw.runner import run
from clue_fw.training.checkpoint import load_checkpoint


def _norms(module: nn.Module) -> list[type]:
    return [type(m) for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


@pytest.mark.parametrize(("mode", "converted"), [("global", True), ("local", False)])
def test_only_global_batchnorm_is_synchronised(
    mode: str, converted: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clue_fw.running import stage as stage_module

    spec = ClueSpec(batchnorm=mode)  # type: ignore[arg-type]
    assert spec.global_batchnorm() is converted
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 4), nn.BatchNorm1d(4))
    calls: list[nn.Module] = []
    monkeypatch.setattr(
        stage_module, "convert_batchnorm", lambda m: calls.append(m) or GlobalBatchNorm1d
    )
    monkeypatch.setattr(stage_module.Stage, "__init__", lambda self, *a, **k: None)
    train = load_recipe(write_recipe(tmp_path)).pretrain.train
    stage_module.Stage.training(
        "pretrain", module, train, None, None, 0, torch.device("cpu"),  # type: ignore[arg-type]
        Distributed(0, 2, torch.device("cpu")), global_batchnorm=spec.global_batchnorm(),
    )  # fmt: skip
    assert (calls == [module]) is converted


def test_batchnorm_is_left_out_of_dumps_at_its_default() -> None:
    assert "batchnorm" not in ClueSpec().model_dump()
    assert ClueSpec(batchnorm="local").model_dump()["batchnorm"] == "local"
    with pytest.raises(ValueError, match="global"):
        ClueSpec(batchnorm="shuffled")  # type: ignore[arg-type]


def _pretrain_losses(run_dir: Path) -> list[float]:
    _, metadata = load_checkpoint(run_dir / "pretrain" / "last.safetensors")
    return [row["loss"] for row in metadata["history"] if "loss" in row]


@pytest.mark.slow
def test_local_batchnorm_changes_a_two_process_run_and_not_a_one_process_run(
    tmp_path: Path,
) -> None:
    recipe = write_recipe(tmp_path)
    local = ["--set", "pretrain.objective.batchnorm=local"]
    quiet = Console(file=io.StringIO())
    one_global = run(load_recipe(recipe), out=tmp_path / "g1", console=quiet)
    one_local = run(
        load_recipe(recipe, ["pretrain.objective.batchnorm=local"]), out=tmp_path / "l1",
        console=quiet,
    )  # fmt: skip
    assert _pretrain_losses(one_local.run_dir) == _pretrain_losses(one_global.run_dir)
    for name, extra in (("g2", []), ("l2", local)):
        done = torchrun(["run", str(recipe), "--out", str(tmp_path / name), *extra], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads((tmp_path / name / "metrics.json").read_text())["processes"] == 2
    two_global, two_local = _pretrain_losses(tmp_path / "g2"), _pretrain_losses(tmp_path / "l2")
    # global statistics follow one process; per-process ones (32 of 64 rows) do not
    assert two_global == pytest.approx(_pretrain_losses(one_global.run_dir), rel=1e-4)
    assert two_local != pytest.approx(two_global, rel=1e-3)
