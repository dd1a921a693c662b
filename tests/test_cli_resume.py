"""Interrupted runs say how to continue, and `clue run --resume DIR` needs no recipe.

Through real `clue` processes: SIGINT and SIGTERM after a checkpoint, then the exact
command the run printed, which finishes it.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Spawn = Callable[..., subprocess.Popen[str]]


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def resume_command(stderr: str) -> list[str]:
    found = re.search(r"continue with: (clue run --resume .+)$", stderr, re.MULTILINE)
    assert found, stderr
    return shlex.split(found.group(1))


def slow_recipe(tmp_path: Path, make_tiny_recipe: Callable[[], dict[str, Any]]) -> Path:
    """A tiny recipe whose pre-training has a few epochs of a fraction of a second each."""
    recipe = make_tiny_recipe()
    recipe["data"]["num_users"] = 400
    recipe["pretrain"]["train"]["epochs"] = 3
    recipe["finetune"]["train"]["epochs"] = 1
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_sigterm_prints_the_resume_command_that_finishes_the_run(
    tmp_path: Path,
    make_tiny_recipe: Callable[[], dict[str, Any]],
    clue_spawn: Spawn,
    clue_finish: Callable[..., Any],
) -> None:
    run_dir = tmp_path / "run"
    first = clue_spawn("run", slow_recipe(tmp_path, make_tiny_recipe), "--out", run_dir)
    wait_for((run_dir / "pretrain" / "last.safetensors").is_file, first, 60)
    first.send_signal(signal.SIGTERM)
    stopped = clue_finish(first)
    assert stopped.returncode == 143, stopped
    assert "Traceback" not in stopped.stderr and "SIGTERM" in stopped.stderr
    command = resume_command(stopped.stderr)
    assert command == ["clue", "run", "--resume", str(run_dir)]
    assert not (run_dir / "metrics.json").exists()

    # the printed command, run from elsewhere: no recipe needed, the lock was released
    done = clue_finish(clue_spawn(*command[1:], cwd=tmp_path))
    assert done.returncode == 0, done
    assert done.stdout.strip() == str(run_dir)
    assert "pretrain: resumed after epoch" in (run_dir / "run.log").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and set(metrics["test"]) == {"mrr@10", "recall@10", "ndcg@10"}
    # off a terminal, every epoch has its line on stderr
    assert "pretrain epoch 3 loss=" in done.stderr and "finetune epoch 1 loss=" in done.stderr


def test_ctrl_c_exits_130_with_the_resume_command(
    tmp_path: Path,
    make_tiny_recipe: Callable[[], dict[str, Any]],
    clue_spawn: Spawn,
    clue_finish: Callable[..., Any],
) -> None:
    run_dir = tmp_path / "run dir"  # a space: the command quotes the path
    process = clue_spawn("run", slow_recipe(tmp_path, make_tiny_recipe), "--out", run_dir)
    wait_for((run_dir / "recipe.yaml").is_file, process, 60)
    process.send_signal(signal.SIGINT)
    stopped = clue_finish(process)
    assert stopped.returncode == 130, stopped
    assert "Traceback" not in stopped.stderr and "Aborted" not in stopped.stderr
    assert resume_command(stopped.stderr) == ["clue", "run", "--resume", str(run_dir)]
