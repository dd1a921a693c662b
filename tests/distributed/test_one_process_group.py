"""``CLUE_DATA_PARALLEL=1``: a torchrun world of one process runs the data-parallel step
(a process group of one), so that its cost can be measured on one GPU against a plain
run; it follows the plain run's losses."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from dp_launch import torchrun
from dp_recipe import write_recipe
from rich.console import Console

from clue_fw.distributed import FORCE_ENV, launch_from_environment
from clue_fw.errors import ClueError
from clue_fw.recipe import load_recipe
from clue_fw.runner import run
from clue_fw.training.checkpoint import load_checkpoint


def test_one_process_is_data_parallel_only_when_asked() -> None:
    one = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}
    assert launch_from_environment(one) is None
    assert launch_from_environment({**one, FORCE_ENV: "0"}) is None
    launch = launch_from_environment({**one, FORCE_ENV: "1"})
    assert launch is not None and (launch.rank, launch.world_size) == (0, 1)
    with pytest.raises(ClueError, match="CLUE_DATA_PARALLEL='yes' must be 1"):
        launch_from_environment({**one, FORCE_ENV: "yes"})


@pytest.mark.slow
def test_torchrun_of_one_process_runs_the_data_parallel_step(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, pretrain__train__epochs=2, finetune__train__epochs=1)
    plain = run(load_recipe(recipe), out=tmp_path / "plain", console=Console(file=io.StringIO()))
    done = torchrun(
        ["run", str(recipe), "--out", str(tmp_path / "one")], tmp_path, 1, {FORCE_ENV: "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["processes"] == 1
    assert "rank 0 of 1 processes" in (tmp_path / "one" / "run.log").read_text()
    for stage in ("pretrain", "finetune"):
        _, ours = load_checkpoint(plain.run_dir / stage / "last.safetensors")
        _, theirs = load_checkpoint(tmp_path / "one" / stage / "last.safetensors")
        for mine, other in zip(ours["history"], theirs["history"], strict=True):
            if "loss" in mine:  # the global BatchNorm adds in float64: float noise
                assert other["loss"] == pytest.approx(mine["loss"], rel=1e-5), (stage, mine)
