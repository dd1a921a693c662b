"""Start ``python -m clue_fw`` as the processes of a data-parallel run, as torchrun would
(WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or through torchrun itself."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 240  # seconds: a hang fails the test instead of the CI job


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CLUE_DISABLE_PLUGINS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def start_ranks(args: list[str], cwd: Path, world: int = 2) -> list[subprocess.Popen[str]]:
    """The ``world`` processes of ``clue ARGS``, started as torchrun starts them."""
    port = str(free_port())
    processes = []
    for rank in range(world):
        env = base_env()
        env.update(
            WORLD_SIZE=str(world),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            CLUE_DIST_TIMEOUT="120",
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "clue_fw", *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes


def finish(processes: list[subprocess.Popen[str]], timeout: float = TIMEOUT) -> list[Finished]:
    """Wait for every process; kill them all and fail if any outlives ``timeout``."""
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append(Finished(process.returncode, stdout, stderr))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        raise AssertionError(f"a rank still ran after {timeout} s: the processes hang") from None
    return results


def run_ranks(args: list[str], cwd: Path, world: int = 2) -> list[Finished]:
    return finish(start_ranks(args, cwd, world))


def torchrun(
    args: list[str], cwd: Path, world: int = 2, env: dict[str, str] | None = None
) -> Finished:
    """``torchrun --nproc_per_node WORLD -m clue_fw ARGS`` on this machine (``env``: more
    variables)."""
    launcher = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [launcher, "--standalone", f"--nproc_per_node={world}", "-m", "clue_fw", *args]
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**base_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return Finished(done.returncode, done.stdout, done.stderr)
