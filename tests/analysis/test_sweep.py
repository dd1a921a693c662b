"""``clue sweep``: grid specs, run folders, skipping finished runs, the table."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_main import main_exit
from conftest import clue_command, clue_env

from clue_fw.analysis.sweep import grid_points, parse_grid, plan, point_name
from clue_fw.errors import ClueError


def test_the_grid_is_every_combination() -> None:
    axes = parse_grid(["backbone.dropout=0.1,0.3", "finetune.train.lr = 0.001"])
    points = grid_points(axes)
    assert [point_name(p) for p in points] == [
        "backbone.dropout=0.1,finetune.train.lr=0.001",
        "backbone.dropout=0.3,finetune.train.lr=0.001",
    ]
    runs = plan(axes, [0, 1], Path("out"))
    assert [str(r.run_dir) for r in runs][:2] == [
        "out/backbone.dropout=0.1,finetune.train.lr=0.001/seed0",
        "out/backbone.dropout=0.1,finetune.train.lr=0.001/seed1",
    ]
    assert [point_name(p) for p in grid_points([])] == ["recipe"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("backbone.dropout", "has no '='"),
        ("=0.1", "the key before '=' is empty"),
        ("backbone.dropout=", "a value is empty"),
        ("backbone.dropout=0.1,,0.2", "a value is empty"),
        ("backbone.dropout=0.1,0.1", "appear twice"),
        ("seed=0,1", "give the seeds with --seeds"),
        ("back bone=1", "is not a dotted recipe key"),
    ],
)
def test_a_bad_grid_spec_says_how_to_write_one(spec: str, message: str) -> None:
    with pytest.raises(ClueError, match=message) as info:
        parse_grid([spec])
    assert "--grid key.path=value1,value2" in str(info.value) and info.value.exit_code == 2


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(ClueError, match="given by another --grid"):
        parse_grid(["seed_x=1", "seed_x=2"])


def test_sweep_runs_the_grid_then_skips_finished_runs(
    capsys: pytest.CaptureFixture[str],
    make_tiny_recipe: Callable[[], dict[str, Any]],
    write_recipe: Callable[..., Path],
    tmp_path: Path,
) -> None:
    recipe = make_tiny_recipe()
    recipe["finetune"]["train"]["epochs"] = 1
    path = write_recipe(recipe)
    out, markdown = tmp_path / "sweep", tmp_path / "sweep.md"
    args = ["sweep", path, "--grid", "backbone.dropout=0.1,0.2", "--seeds", "0"]
    code, _, stderr = main_exit(
        [*args, "--jobs", "2", "--out", out, "--markdown", markdown], capsys
    )
    assert code == 0, stderr
    for value in ("0.1", "0.2"):
        assert (out / f"backbone.dropout={value}" / "seed0" / "metrics.json").is_file()
        assert (out / f"backbone.dropout={value}" / "seed0.log").is_file()
    lines = markdown.read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| backbone.dropout=0.1",
        "| backbone.dropout=0.2",
    ]
    assert all(line.split(" | ")[1] == "1 (0)" for line in lines[2:])
    # Again: both runs have finished, so nothing runs; the same table comes out.
    code, _, stderr = main_exit([*args, "--out", out, "--markdown", markdown], capsys)
    assert code == 0, stderr
    assert "2 finished before" in stderr and "ok in" not in stderr
    assert markdown.read_text().splitlines() == lines


@pytest.mark.parametrize(
    "args, message",
    [
        (["--grid", "backbone.dropout"], "has no '='"),
        (["--grid", "backbone.dropuot=0.1"], "grid point backbone.dropuot=0.1"),
        (["--seeds", "0", "x"], "--seeds takes whole numbers"),
    ],
)
def test_sweep_refuses_bad_input_before_running(
    capsys: pytest.CaptureFixture[str],
    make_tiny_recipe: Callable[[], dict[str, Any]],
    write_recipe: Callable[..., Path],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    path = write_recipe(make_tiny_recipe())
    code, _, stderr = main_exit(["sweep", path, "--out", tmp_path / "sweep", *args], capsys)
    assert code == 2, stderr
    assert message in " ".join(stderr.split())
    assert not (tmp_path / "sweep").exists()


def test_sigterm_stops_the_sweep_and_the_run_it_started(
    make_tiny_recipe: Callable[[], dict[str, Any]],
    write_recipe: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """SIGTERM to the sweep reaches its `clue run`, which saves and leaves; the sweep waits
    for it, says how to continue and exits 143 (it used to leave the run training)."""
    recipe = make_tiny_recipe()
    recipe["pretrain"]["train"]["epochs"] = 1000  # trains until it is stopped
    path = write_recipe(recipe)
    out = tmp_path / "sweep"
    sweep = subprocess.Popen(
        clue_command("sweep", path, "--out", out),
        env=clue_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = out / "recipe" / "seed0"
    checkpoint = run_dir / "pretrain" / "last.safetensors"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.is_file():  # the run is training (an epoch is done)
            assert sweep.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        pid = int((run_dir / ".lock").read_text().split()[0])
        sweep.send_signal(signal.SIGTERM)
        _, stderr = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 143, stderr
    message = " ".join(stderr.split())
    assert "interrupted (SIGTERM); 1 running run(s) stopped" in message, stderr
    assert f"Continue the sweep with: clue sweep {path} --out {out}" in message
    with pytest.raises(ProcessLookupError):  # the run is gone, not training on
        os.kill(pid, 0)
    log = (out / "recipe" / "seed0.log").read_text()
    assert "interrupted (SIGTERM); continue with: clue run --resume" in " ".join(log.split())
    assert not (run_dir / "metrics.json").exists()


def test_list_values_can_be_swept() -> None:
    axes = parse_grid(["pretrain.train.betas=[0.9, 0.99],[0.8,0.9]"])
    assert axes[0].values == ("[0.9, 0.99]", "[0.8,0.9]")
    with pytest.raises(ClueError, match="a bracket or quote is not closed"):
        parse_grid(["pretrain.train.betas=[0.9,0.99"])


def test_each_run_gets_its_share_of_threads_and_its_own_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clue_fw.analysis import sweep

    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 16)
    slots = sweep.Slots(4, environ={"CUDA_VISIBLE_DEVICES": "2,5", "PATH": "/bin"})
    envs = [slots.environment(slot) for slot in range(4)]
    assert {env["OMP_NUM_THREADS"] for env in envs} == {"4"}  # 16 cores / 4 runs
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["2", "5", "2", "5"]
    assert all(env["PATH"] == "/bin" for env in envs)
    # the user's own thread count wins; one GPU is left as it is
    mine = sweep.Slots(2, environ={"OMP_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": "1"})
    assert mine.environment(1)["OMP_NUM_THREADS"] == "3"
    assert mine.environment(1)["CUDA_VISIBLE_DEVICES"] == "1"
    # slots are reused: a run takes the lowest free one
    first, second = slots.take(), slots.take()
    slots.give_back(first)
    assert (first, second, slots.take()) == (0, 1, 0)


def test_the_run_process_sees_the_slot_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from clue_fw.analysis import sweep

    script = "import os; print('threads', os.environ['OMP_NUM_THREADS'])"
    monkeypatch.setattr(sweep, "command", lambda recipe, run: [sys.executable, "-c", script])
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 6)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    runs = [sweep.SweepRun((), seed, tmp_path / f"seed{seed}") for seed in range(3)]
    outcomes = sweep.execute(tmp_path / "r.yaml", runs, jobs=3)
    assert [o.code for o in outcomes] == [0, 0, 0]
    assert all(run.log.read_text().strip() == "threads 2" for run in runs)


@pytest.mark.parametrize("width", [80, 60])
def test_a_sweep_table_at_terminal_width_shows_every_grid_value_in_full(width: int) -> None:
    from rich.console import Console

    from clue_fw.analysis.compare import Comparison
    from clue_fw.cli_analysis import comparison_table

    names = [
        "backbone.dropout=0.1,finetune.train.lr=0.001",
        "backbone.dropout=0.3,finetune.train.lr=0.001",
        "backbone.dropout=0.5,finetune.train.lr=0.001",
    ]
    header = ["run", "seeds", "valid ndcg@10", "test ndcg@10", "test recall@10", "best epoch"]
    rows = [[name, "0 1 2", "0.1234 ± 0.0012", "0.1201 ± 0.0034", "0.2345 ± 0.0045", "12"]
            for name in names]  # fmt: skip
    console = Console(record=True, width=width, emoji=False)
    console.print(comparison_table(Comparison(header, rows), width))
    text = console.export_text()
    assert all(line and len(line) <= width for line in text.splitlines())
    assert "…" not in text, text  # nothing cut
    for value in ("backbone.dropout=0.1", "backbone.dropout=0.3", "backbone.dropout=0.5"):
        assert value in text, text  # each row's own grid value, on one line
    assert "every row: finetune.train.lr=0.001" in " ".join(text.split())
    if width == 80:  # wide enough for every metric cell on its row's lines
        assert "0.1234 ±" in text and "0.0012" in text
