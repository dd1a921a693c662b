"""An exception on one process of a data-parallel run ends every process within seconds.

Two gloo processes (started as torchrun starts them, without torchrun's supervision)
train a recipe whose plugin backbone raises in ``forward`` on one rank only. The failing
process prints the one message (naming the plugin) and exits 2; the other, waiting in a
collective with it, stops with it quietly, instead of waiting out the process group's
timeout (30 minutes by default: ``CLUE_DIST_TIMEOUT`` is left unset here).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from dp_launch import base_env, free_port
from dp_recipe import write_recipe

SCRIPT = Path(__file__).with_name("flaky_clue.py")
MESSAGE = "FlakyEncoder (module input_paths, plugin clue-flaky 0.1) raised RuntimeError in forward"


@pytest.mark.slow
@pytest.mark.parametrize("failing", [1, 0])
def test_an_exception_on_one_rank_ends_every_rank(tmp_path: Path, failing: int) -> None:
    recipe = write_recipe(tmp_path, backbone={"kind": "flaky", "dim": 16})
    port = str(free_port())
    processes = []
    started = time.monotonic()
    for rank in range(2):
        env = base_env()
        env.pop("CLUE_DISABLE_PLUGINS")  # the flaky plugin's fake entry point must load
        env.pop("CLUE_DIST_TIMEOUT", None)
        env.update(
            WORLD_SIZE="2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            CLUE_TEST_BACKBONE_RAISES=f"rank{failing}",
        )
        command = [sys.executable, str(SCRIPT), "run", str(recipe), "--out", str(tmp_path / "run")]
        processes.append(
            subprocess.Popen(
                command,
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    results = []
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=max(1.0, 60 - (time.monotonic() - started)))
            results.append((process.returncode, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert time.monotonic() - started < 60
    codes = [code for code, _ in results]
    assert codes[failing] == 2, results[failing][1][-3000:]
    assert codes[1 - failing] in (1, 2), results[1 - failing][1][-3000:]
    errors = [stderr for _, stderr in results]
    assert MESSAGE in " ".join(errors[failing].split())
    assert "error:" not in errors[1 - failing], errors[1 - failing][-3000:]  # one message
    assert all("Traceback" not in stderr for stderr in errors)
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(("reachable", "quiet"), [((True, False), True), ((True, True), False)])
def test_a_store_lost_while_it_is_read_stops_the_process_quietly(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reachable: tuple[bool, bool],
    quiet: bool,
) -> None:
    """A failing rank 0's connections may close only when it exits, with the store it
    hosts: a process that lost it, found the store and then could not read it stops
    quietly (rank 0 reports its own failure); one whose store answers but holds no
    failure reports its own error."""
    import clue_fw.cli_processes as cli_processes
    import clue_fw.distributed as distributed

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    answers = iter(reachable)
    monkeypatch.setattr(distributed, "store_reachable", lambda: next(answers))
    monkeypatch.setattr(distributed, "failure_elsewhere", lambda rank: None)
    announced: list[int] = []
    monkeypatch.setattr(cli_processes, "_announce", announced.append)
    lost = RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:9132.")
    assert cli_processes._parallel_failure(lost) == 1
    assert (announced == []) is quiet
    assert ("error: process 1 of 2 failed" in capsys.readouterr().err) is not quiet
