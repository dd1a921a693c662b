"""Resuming: an interrupted run continued with --resume ends exactly like an uninterrupted one."""

from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from rich.console import Console
from safetensors import safe_open

from clue_fw.recipe import validate_recipe
from clue_fw.runner import run
from clue_fw.training.checkpoint import load_checkpoint

# Big enough that epochs take a noticeable fraction of a second (so the test can kill a
# run between two epochs), small enough that a whole run takes a few seconds.
RESUME_RECIPE: dict[str, Any] = {
    "seed": 3,
    "device": "cpu",
    "data": {
        "format": "synthetic",
        "num_users": 400,
        "num_items": 60,
        "min_length": 8,
        "max_length": 30,
        "max_len": 12,
    },
    "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2, "dropout": 0.2},
    "pretrain": {
        "objective": {"kind": "clue", "projector_dim": 32, "predictor_dim": 8},
        "train": {"epochs": 4, "batch_size": 32, "history": "all"},
    },
    "finetune": {
        # an untied output layer: the head has its own parameters and Adam state
        "head": {"kind": "next_item", "tie_weights": False},
        "train": {"epochs": 5, "batch_size": 32, "history": "all", "grad_clip": 5.0},
        "patience": 10,
    },
}


def metadata(path: Path) -> dict[str, Any] | None:
    """The clue_fw metadata of a checkpoint, or None while it does not exist yet."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {})["clue_fw"])
    except Exception:  # not written yet (checkpoints are renamed into place atomically)
        return None


def kill_after_epoch(process: subprocess.Popen[str], checkpoint: Path, timeout: float = 120) -> int:
    """SIGKILL ``process`` once ``checkpoint`` records a finished epoch but not the stage's end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(
                f"the run ended (rc {process.returncode}) before it could be interrupted:\n"
                + stderr[-3000:]
            )
        meta = metadata(checkpoint)
        if meta is not None and meta["epoch"] >= 1 and not meta["finished"]:
            process.kill()  # SIGKILL: no cleanup, no final checkpoint
            process.communicate()
            return int(meta["epoch"])
        time.sleep(0.005)
    process.kill()
    process.communicate()
    pytest.fail(f"{checkpoint} never showed a finished epoch")


def assert_same_outcome(reference: Path, resumed: Path) -> None:
    ref_metrics = json.loads((reference / "metrics.json").read_text())
    new_metrics = json.loads((resumed / "metrics.json").read_text())
    for key in ("valid", "test", "best_epoch", "epochs"):
        assert new_metrics[key] == ref_metrics[key], key  # exact, not approximate
    for relative in ("finetune/best.safetensors", "pretrain/encoder.safetensors"):
        ref_tensors, _ = load_checkpoint(reference / relative)
        new_tensors, _ = load_checkpoint(resumed / relative)
        assert set(new_tensors) == set(ref_tensors)
        for name, value in ref_tensors.items():
            assert torch.equal(new_tensors[name], value), (relative, name)
    _, ref_last = load_checkpoint(reference / "finetune" / "last.safetensors")
    _, new_last = load_checkpoint(resumed / "finetune" / "last.safetensors")
    strip = [
        {k: v for k, v in row.items() if k not in ("seconds", "eval seconds", "seq/s")}
        for row in ref_last["history"]
    ]
    assert [
        {k: v for k, v in row.items() if k not in ("seconds", "eval seconds", "seq/s")}
        for row in new_last["history"]
    ] == strip


def test_sigkill_twice_then_resume_matches_uninterrupted(
    tmp_path: Path, clue_spawn: Callable[..., subprocess.Popen[str]], clue: Callable[..., Any]
) -> None:
    recipe = tmp_path / "resume.yaml"
    recipe.write_text(yaml.safe_dump(RESUME_RECIPE, sort_keys=False))
    # One thread per process: the uninterrupted reference runs alongside the others, and
    # every process must use the same thread count for bit-identical results.
    env = {"OMP_NUM_THREADS": "1"}
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    reference = clue_spawn("run", recipe, "--out", reference_dir, env=env)
    try:
        # 1. killed during pre-training
        first = clue_spawn("run", recipe, "--out", run_dir, env=env)
        pretrain_epoch = kill_after_epoch(first, run_dir / "pretrain" / "last.safetensors")
        assert not (run_dir / "finetune").exists()
        # 2. resumed, then killed again during fine-tuning
        second = clue_spawn("run", recipe, "--resume", run_dir, env=env)
        finetune_epoch = kill_after_epoch(second, run_dir / "finetune" / "last.safetensors")
        assert not (run_dir / "metrics.json").exists()
        # 3. resumed to the end
        result = clue("run", recipe, "--resume", run_dir, env=env)
        assert result.returncode == 0, result
        assert "Traceback" not in result.stderr
        _, stderr = reference.communicate(timeout=300)
        assert reference.returncode == 0, stderr
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.communicate()
    log = (run_dir / "run.log").read_text()
    assert f"pretrain: resumed after epoch {pretrain_epoch}\n" in log
    assert f"finetune: resumed after epoch {finetune_epoch}\n" in log
    assert_same_outcome(reference_dir, run_dir)


# --------------------------------------------------------------------------- in-process


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.mark.parametrize("remove", [["finetune"], ["finetune", "pretrain/encoder.safetensors"]])
def test_interrupted_between_stages(
    tmp_path: Path, tiny_recipe: dict[str, Any], remove: list[str]
) -> None:
    """Killed after pre-training finished, before fine-tuning saved anything."""
    data = copy.deepcopy(tiny_recipe)
    data["finetune"]["head"]["tie_weights"] = False  # a head with its own initialisation
    recipe = validate_recipe(data)
    reference = run(recipe, out=tmp_path / "reference", console=quiet()).run_dir
    interrupted = tmp_path / "interrupted"
    shutil.copytree(reference, interrupted)
    (interrupted / "metrics.json").unlink()
    for relative in remove:
        target = interrupted / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    run(recipe, resume=interrupted, console=quiet())
    assert_same_outcome(reference, interrupted)


def test_resume_refuses_a_checkpoint_from_another_recipe(
    tmp_path: Path, tiny_recipe: dict[str, Any]
) -> None:
    from clue_fw.errors import CheckpointError, RunDirectoryError
    from clue_fw.running.identity import RunIdentity

    recipe = validate_recipe(tiny_recipe)
    run_dir = run(recipe, out=tmp_path / "run", console=quiet()).run_dir
    (run_dir / "metrics.json").unlink()
    other = copy.deepcopy(tiny_recipe)
    other["seed"] = 1
    # recipe.yaml says seed 0: resuming with seed 1 is refused before anything runs
    with pytest.raises(RunDirectoryError, match=r"changed: seed"):
        run(validate_recipe(other), resume=run_dir, console=quiet())
    # a stage checkpoint written by another run (and recipe) is refused too
    other_json = validate_recipe(other).model_dump(mode="json")
    first = (run_dir / "recipe.yaml").read_text().split("\n", 1)[0]
    data = RunIdentity.from_header(first).data  # type: ignore[union-attr]
    (run_dir / "recipe.yaml").write_text(
        RunIdentity.new(other_json, data).header()
        + "\n"
        + yaml.safe_dump(other_json, sort_keys=False)
    )
    with pytest.raises(CheckpointError, match="last.safetensors was written by another run"):
        run(validate_recipe(other), resume=run_dir, console=quiet())
