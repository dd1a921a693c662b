"""Crash safety: SIGKILL a run at a dozen random points, resume it with --resume each
time, and end bit-for-bit where an uninterrupted run with the same seed ends.

The kills are drawn from a seeded ``random.Random``: some at a random delay, some when a
condition holds (pre-training finished, a checkpoint temp file exists). The killed
processes run the CLI behind a small wrapper that sleeps inside ``os.fsync``, which
widens the moment between writing a temp file and renaming it into place, so that
several kills land in the middle of a checkpoint write.

Edge: a kill before the run directory holds anything (interpreter start-up, data
loading, or between ``mkdir`` and the first write) leaves no run to resume, or an
empty directory; the run then starts again with ``--out`` (an empty directory is
accepted). A kill during the write of ``recipe.yaml`` leaves only its temp file, and
``--resume`` starts from scratch in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors import safe_open

from clue_fw.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

# About 3 s of pre-training and 4 s of fine-tuning on one CPU thread.
KILL_RECIPE: dict[str, Any] = {
    "seed": 11,
    "device": "cpu",
    "data": {
        "format": "synthetic",
        "num_users": 800,
        "num_items": 80,
        "min_length": 8,
        "max_length": 30,
        "max_len": 12,
    },
    "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2, "dropout": 0.2},
    "pretrain": {
        "objective": {"kind": "clue", "projector_dim": 32, "predictor_dim": 8},
        "train": {"epochs": 8, "batch_size": 32, "history": "all"},
    },
    "finetune": {
        # an untied output layer: the head has its own parameters and Adam state
        "head": {"kind": "next_item", "tie_weights": False},
        "train": {"epochs": 16, "batch_size": 32, "history": "all", "grad_clip": 5.0},
        "patience": 30,
    },
}

FSYNC_DELAY_S = 0.05
WRAPPER = textwrap.dedent(
    """
    import os, sys, time
    _fsync, _delay = os.fsync, float(os.environ["CLUE_TEST_FSYNC_DELAY"])
    def _slow_fsync(fd):  # a temp file is written, not yet renamed into place
        time.sleep(_delay)
        _fsync(fd)
    os.fsync = _slow_fsync
    from clue_fw.cli import main
    main(sys.argv[1:])
    """
)


@dataclass(frozen=True)
class Trigger:
    """Kill once ``when`` holds, after a random extra delay in [low, high] seconds.

    ``spawn``: at once; ``started``: the process has logged its run directory;
    ``write``: a checkpoint temp file the process made exists; ``pretrain_done``: the
    pre-training checkpoint says finished (the kill then lands between the stages).
    """

    when: str
    low: float = 0.0
    high: float = 0.0


SCHEDULE = [
    Trigger("spawn", 0.0, 3.0),  # start-up, data loading or early pre-training
    Trigger("started", 0.0, 0.5),
    Trigger("write"),
    Trigger("pretrain_done"),
    Trigger("started", 0.0, 0.3),
    Trigger("write"),
    Trigger("started", 0.0, 0.4),
    Trigger("write"),
    Trigger("started", 0.0, 0.4),
    Trigger("started", 0.0, 0.4),
    Trigger("write"),
    Trigger("started", 0.0, 0.4),
]


def env() -> dict[str, str]:
    variables = dict(os.environ)
    variables.pop("CLUE_PLUGINS", None)
    # One thread in every process: bit-identical results need the same thread count.
    variables.update(
        CLUE_DISABLE_PLUGINS="1", OMP_NUM_THREADS="1", CLUE_TEST_FSYNC_DELAY=str(FSYNC_DELAY_S)
    )
    return variables


def spawn(log: Path, *args: str | Path, wrapped: bool = True) -> subprocess.Popen[bytes]:
    head = [sys.executable, "-c", WRAPPER] if wrapped else [sys.executable, "-m", "clue_fw.cli"]
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [*head, *map(str, args)], env=env(), stdout=subprocess.DEVNULL, stderr=stderr
        )


def metadata(path: Path) -> dict[str, Any] | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {})["clue_fw"])
    except Exception:  # not there (yet): checkpoints are renamed into place
        return None


def temp_files(run_dir: Path) -> set[Path]:
    return set(run_dir.rglob("*.tmp")) if run_dir.exists() else set()


def run_starts(run_dir: Path) -> int:
    try:
        return (run_dir / "run.log").read_text().count(" run directory: ")
    except FileNotFoundError:
        return 0


def phase(run_dir: Path) -> str:
    """Where the run stood when it was killed, from what it had written."""
    if not (run_dir / "recipe.yaml").exists():
        return "start-up"
    if (run_dir / "metrics.json").exists():
        return "finished"
    if (run_dir / "finetune" / "last.safetensors").exists():
        return "fine-tuning"
    pretrain = metadata(run_dir / "pretrain" / "last.safetensors")
    return "between stages" if pretrain and pretrain["finished"] else "pre-training"


def assert_consistent(run_dir: Path) -> None:
    """What a kill may leave: complete files only, and metrics.json only for a finished run."""
    if (run_dir / "metrics.json").exists():
        finetune = metadata(run_dir / "finetune" / "last.safetensors")
        assert finetune is not None and finetune["finished"], "metrics.json before the end"
        json.loads((run_dir / "metrics.json").read_text())
    for checkpoint in run_dir.rglob("*.safetensors"):
        load_checkpoint(checkpoint)  # never truncated: written to a temp file, then renamed
    if (run_dir / "recipe.yaml").exists():
        assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["seed"] == KILL_RECIPE["seed"]


def wait_for(trigger: Trigger, process: subprocess.Popen[bytes], run_dir: Path) -> bool:
    """Wait until ``trigger`` holds; False when the process ended first."""
    starts, temps = run_starts(run_dir), temp_files(run_dir)
    pretrain_done_before = (metadata(run_dir / "pretrain" / "last.safetensors") or {}).get(
        "finished", False
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if trigger.when == "spawn":
            return True
        if trigger.when == "started" and run_starts(run_dir) > starts:
            return True
        if trigger.when == "write" and temp_files(run_dir) - temps:
            return True
        if trigger.when == "pretrain_done" and not pretrain_done_before:
            meta = metadata(run_dir / "pretrain" / "last.safetensors")
            if meta is not None and meta["finished"]:
                return True
        if (run_dir / "metrics.json").exists():
            assert process.poll() is not None or phase(run_dir) == "finished"
        time.sleep(0.002)
    raise AssertionError(f"{trigger} never held")


def files(run_dir: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def assert_identical(reference: Path, resumed: Path) -> None:
    ref = json.loads((reference / "metrics.json").read_text())
    new = json.loads((resumed / "metrics.json").read_text())
    for key in ("valid", "test", "best_epoch", "epochs", "monitor"):
        assert new[key] == ref[key], key  # exact, not approximate
    for relative in (
        "pretrain/last.safetensors",  # encoder, objective and Adam state
        "pretrain/encoder.safetensors",
        "finetune/last.safetensors",  # model and Adam state (exp_avg, exp_avg_sq, step)
        "finetune/best.safetensors",
    ):
        ref_tensors, ref_meta = load_checkpoint(reference / relative)
        new_tensors, new_meta = load_checkpoint(resumed / relative)
        assert set(new_tensors) == set(ref_tensors), relative
        for name, value in ref_tensors.items():
            assert torch.equal(new_tensors[name], value), (relative, name)
        assert new_meta["epoch"] == ref_meta["epoch"], relative
        assert new_meta.get("optimizer") == ref_meta.get("optimizer"), relative
        untimed = [
            [
                {k: v for k, v in row.items() if k not in ("seconds", "eval seconds", "seq/s")}
                for row in rows
            ]
            for rows in (ref_meta.get("history", []), new_meta.get("history", []))
        ]
        assert untimed[0] == untimed[1], relative


def test_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    rng = random.Random(20211207)
    recipe = tmp_path / "kill.yaml"
    recipe.write_text(yaml.safe_dump(KILL_RECIPE, sort_keys=False))
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    reference = spawn(
        tmp_path / "reference.log", "run", recipe, "--out", reference_dir, wrapped=False
    )
    kills: list[tuple[str, str, bool]] = []  # (trigger, phase, killed mid-write)
    try:
        for attempt in range(len(SCHEDULE) + 1):
            fresh = not run_dir.exists() or not any(run_dir.iterdir())
            flag = "--out" if fresh else "--resume"
            stale = temp_files(run_dir)  # left by an earlier kill; --resume removes them
            process = spawn(tmp_path / f"attempt{attempt}.log", "run", recipe, flag, run_dir)
            trigger = SCHEDULE[attempt] if attempt < len(SCHEDULE) else None
            if trigger is None or not wait_for(trigger, process, run_dir):
                break
            time.sleep(rng.uniform(trigger.low, trigger.high))
            before_kill = temp_files(run_dir)
            process.kill()  # SIGKILL: no cleanup, no final checkpoint
            process.wait()
            mid_write = bool((before_kill & temp_files(run_dir)) - stale)
            kills.append((trigger.when, phase(run_dir), mid_write))
            assert_consistent(run_dir)
            if len(kills) == 6:  # a changed recipe is refused, and nothing is touched
                snapshot = files(run_dir)
                refused = subprocess.run(
                    [sys.executable, "-m", "clue_fw.cli", "run", recipe, "--set", "seed=12"]
                    + ["--resume", str(run_dir)],
                    env=env(),
                    capture_output=True,
                    text=True,
                )
                assert refused.returncode == 2, refused.stderr
                flat = " ".join(refused.stderr.split())
                assert "the recipe differs" in flat and "changed: seed" in flat
                assert "Traceback" not in refused.stderr
                assert files(run_dir) == snapshot
        assert process.wait(timeout=300) == 0, (tmp_path / f"attempt{attempt}.log").read_text()
        assert reference.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()
    finally:
        for leftover in (reference, process):
            if leftover.poll() is None:
                leftover.kill()
                leftover.wait()

    report = "\n".join(f"{when:>14} -> {where}{' (mid-write)' * mid}" for when, where, mid in kills)
    assert len(kills) >= 10, report
    seen = {where for _, where, _ in kills}
    assert {"pre-training", "between stages", "fine-tuning"} <= seen, report
    assert sum(mid for _, _, mid in kills) >= 2, report
    assert not temp_files(run_dir), "temp files left behind"
    assert_identical(reference_dir, run_dir)

    # Resuming a finished run changes nothing (run.log only notes it).
    snapshot = files(run_dir, skip=("run.log",))
    again = subprocess.run(
        [sys.executable, "-m", "clue_fw.cli", "run", recipe, "--resume", str(run_dir)],
        env=env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert "nothing to resume" in again.stderr
    assert files(run_dir, skip=("run.log",)) == snapshot
