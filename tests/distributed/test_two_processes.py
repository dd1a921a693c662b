"""Two CPU processes (gloo) follow the global batches of one: the same losses, the same
metrics, one set of files; a killed two-process run resumes to the same end.

Residual differences. Two processes add up the same numbers in another order (each
BatchNorm statistic and gradient is a sum of two halves), so weights differ from one
process's in the last float bits. Adam turns such noise into full-size steps for
parameters whose true gradient is zero (the attention's key bias, the bias of the
LayerNorm in front of CLUE's BatchNorm projector), so those parameters wander apart by
about the learning rate, exactly as they do between two one-process runs with
different numbers of CPU threads. Losses agree to about 1e-6; a ranking metric may
move by a user or two whose held-out item's score sits within float noise of another
item's. The tests allow that, and no more.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from dp_launch import finish, start_ranks, torchrun
from dp_recipe import RECIPE, write_recipe
from rich.console import Console

from clue_fw.recipe import load_recipe
from clue_fw.runner import run
from clue_fw.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

USERS = RECIPE["data"]["num_users"]


def history(run_dir: Path, stage: str) -> list[dict[str, Any]]:
    _, metadata = load_checkpoint(run_dir / stage / "last.safetensors")
    return metadata["history"]


def assert_same_training(one: Path, two: Path) -> None:
    """Per-epoch losses to 1e-4 relative (pre-training's agree to about 1e-6; fine-tuning
    starts from an encoder whose zero-gradient biases wandered), validation metrics
    within two users."""
    for stage in ("pretrain", "finetune"):
        ours, theirs = history(one, stage), history(two, stage)
        assert [row["epoch"] for row in ours] == [row["epoch"] for row in theirs]
        for mine, other in zip(ours, theirs, strict=True):
            if "loss" in mine:
                assert other["loss"] == pytest.approx(mine["loss"], rel=1e-4), (stage, mine, other)
            for key in (k for k in mine if k.startswith("valid ")):
                assert other[key] == pytest.approx(mine[key], abs=2 / USERS), (stage, key)


def assert_same_metrics(one: dict[str, Any], two: dict[str, Any]) -> None:
    for split in ("valid", "test"):
        assert one[split].keys() == two[split].keys()
        for name, value in one[split].items():
            # a held-out item within float noise of another item may swap places with it
            assert two[split][name] == pytest.approx(value, abs=2 / USERS), (split, name)


def test_two_processes_follow_one_process(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    started = time.perf_counter()
    one = run(load_recipe(recipe), out=tmp_path / "one", console=Console(file=io.StringIO()))
    result = torchrun(["run", str(recipe), "--out", str(tmp_path / "two")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    two_dir = tmp_path / "two"
    two = json.loads((two_dir / "metrics.json").read_text())
    assert two["processes"] == 2 and "processes" not in one.metrics
    assert_same_training(one.run_dir, two_dir)
    assert_same_metrics(one.metrics, two)
    assert two["best_epoch"] == one.metrics["best_epoch"]
    # one set of files, written by rank 0; rank 1 printed nothing and wrote nothing
    assert result.stdout.strip().splitlines() == [str(two_dir)]
    log = (two_dir / "run.log").read_text()
    assert log.count("run directory:") == 1 and "rank 0 of 2 processes" in log
    assert sorted(p.name for p in two_dir.iterdir()) == sorted(
        p.name for p in one.run_dir.iterdir()
    )
    assert time.perf_counter() - started < 200


def test_a_killed_two_process_run_resumes_to_the_same_end(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    whole = finish(start_ranks(["run", str(recipe), "--out", "whole"], tmp_path))
    assert all(r.returncode == 0 for r in whole), [r.stderr[-2000:] for r in whole]

    # Kill both processes once fine-tuning has checkpointed its first epoch.
    processes = start_ranks(["run", str(recipe), "--out", "killed"], tmp_path)
    last = tmp_path / "killed" / "finetune" / "last.safetensors"
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and not _epoch_at_least(last, 1):
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.02)
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    finish(processes)
    assert not (tmp_path / "killed" / "metrics.json").exists(), "the run ended before the kill"

    resumed = finish(start_ranks(["run", str(recipe), "--resume", "killed"], tmp_path))
    assert all(r.returncode == 0 for r in resumed), [r.stderr[-2000:] for r in resumed]
    assert "finetune: resumed after epoch" in resumed[0].stderr
    want = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    got = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    # the same processes, the same operations: equal to the last bit
    assert got["valid"] == want["valid"] and got["test"] == want["test"]
    assert got["best_epoch"] == want["best_epoch"]
    assert _untimed(history(tmp_path / "killed", "finetune")) == _untimed(
        history(tmp_path / "whole", "finetune")
    )


def _epoch_at_least(path: Path, epoch: int) -> bool:
    try:
        _, metadata = load_checkpoint(path)
    except Exception:  # not there yet, or being replaced
        return False
    return int(metadata.get("epoch", 0)) >= epoch


def _untimed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows without their timing columns (wall time is not reproducible)."""
    return [{k: v for k, v in row.items() if "seconds" not in k and "/s" not in k} for row in rows]
