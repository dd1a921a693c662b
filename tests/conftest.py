"""Shared fixtures: hermetic plugin loading, tiny synthetic recipes, a `clue` runner."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# Hermetic: no installed entry-point plugin may change what the tests see. Set at import,
# before clue_fw builds its registry, and inherited by every `clue` subprocess.
os.environ["CLUE_DISABLE_PLUGINS"] = "1"
os.environ.pop("CLUE_PLUGINS", None)

REPO_ROOT = Path(__file__).resolve().parent.parent

# ~200 users, 50 items, max_len 10, dim 16: a complete run takes about a second.
TINY_RECIPE: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "data": {
        "format": "synthetic",
        "num_users": 200,
        "num_items": 50,
        "min_length": 5,
        "max_length": 15,
        "num_clusters": 5,
        "max_len": 10,
    },
    "backbone": {"kind": "transformer", "dim": 16, "blocks": 1, "heads": 2, "dropout": 0.1},
    "pretrain": {
        "objective": {"kind": "clue", "projector_dim": 16, "predictor_dim": 8},
        "views": [{"kind": "dropout"}],
        "train": {"epochs": 1, "batch_size": 64},
    },
    "finetune": {
        "head": {"kind": "next_item"},
        "train": {"epochs": 3, "batch_size": 64},
        "patience": 5,
    },
}


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Drop the process registry (and cached recipe models) after every test."""
    from clue_fw.registry import reset_registry

    yield
    reset_registry()


@pytest.fixture(scope="session")
def make_tiny_recipe() -> Callable[[], dict[str, Any]]:
    """A factory of fresh (deep-copied) tiny synthetic recipe mappings."""
    return lambda: copy.deepcopy(TINY_RECIPE)


@pytest.fixture
def tiny_recipe(make_tiny_recipe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A fresh tiny synthetic recipe mapping."""
    return make_tiny_recipe()


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """Write a recipe mapping as YAML under tmp_path and return its path."""

    def write(data: dict[str, Any], name: str = "tiny.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


def clue_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "clue_fw.cli", *map(str, args)]


def clue_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CLUE_DISABLE_PLUGINS"] = "1"
    env.pop("CLUE_PLUGINS", None)
    env.update(extra)
    return env


def with_default_interrupt() -> None:
    """Run in a spawned child before it starts: Ctrl-C (SIGINT) at its default action, as
    for a process in the foreground of a terminal. A shell that starts the test run in the
    background without job control (`pytest &`, `nohup ... &`) ignores SIGINT for it,
    every child inherits that, and the tests that press Ctrl-C would see nothing happen."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def clue_spawn() -> Callable[..., subprocess.Popen[str]]:
    """Start `python -m clue_fw.cli ARGS` without waiting (stdout/stderr piped)."""

    def spawn(
        *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            clue_command(*args),
            cwd=cwd,
            env=clue_env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=with_default_interrupt,
        )

    return spawn


@pytest.fixture(scope="session")
def clue(clue_spawn: Callable[..., subprocess.Popen[str]]) -> Callable[..., Finished]:
    """Run `python -m clue_fw.cli ARGS` in a subprocess and wait for it."""

    def run(
        *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Finished:
        return finish(clue_spawn(*args, cwd=cwd, env=env))

    return run


class Finished:
    """A finished `clue` process: exit code and captured output."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return (
            f"Finished({self.args!r}, rc={self.returncode})\n--- stdout\n{self.stdout}"
            f"\n--- stderr\n{self.stderr}"
        )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> Finished:
    stdout, stderr = process.communicate(timeout=timeout)
    return Finished(list(map(str, process.args)), process.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def clue_finish() -> Callable[..., Finished]:
    """Wait for a process from `clue_spawn` and return it as :class:`Finished`."""
    return finish
