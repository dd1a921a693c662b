"""What --resume makes of a run directory a killed process left behind."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clue_fw.errors import RunDirectoryError
from clue_fw.runner import run
from clue_fw.running.run_directory import stale_temp_files


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture
def short(tiny_recipe: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(tiny_recipe)
    data["pretrain"] = None
    data["finetune"]["train"]["epochs"] = 1
    return data


def test_killed_while_writing_recipe_yaml_starts_in_place(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".recipe.yaml.k3j9x1.tmp").write_text("seed: 0\nda")  # the write was cut
    result = run(short, resume=run_dir, console=quiet())
    assert (run_dir / "metrics.json").is_file() and (run_dir / "recipe.yaml").is_file()
    assert not list(run_dir.rglob("*.tmp"))
    assert "interrupted before it wrote anything" in (run_dir / "run.log").read_text()
    assert result.metrics == json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("contents", [[], ["notes.txt"], ["notes.txt", ".recipe.yaml.a.tmp"]])
def test_resume_of_a_directory_without_recipe_is_refused(
    tmp_path: Path, short: dict[str, Any], contents: list[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in contents:
        (run_dir / name).write_text("x")
    with pytest.raises(RunDirectoryError, match=r"no recipe.yaml.*start it again with --out"):
        run(short, resume=run_dir, console=quiet())
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(contents)  # nothing touched


def test_resume_removes_stale_temp_files_only(tmp_path: Path, short: dict[str, Any]) -> None:
    run_dir = run(short, out=tmp_path / "run", console=quiet()).run_dir
    (run_dir / "metrics.json").unlink()
    stale = [
        run_dir / ".metrics.json.abc.tmp",
        run_dir / "finetune" / ".last.safetensors.x1.tmp",
        run_dir / "finetune" / ".best.safetensors.x2.tmp",
    ]
    foreign = [run_dir / ".notes.tmp", run_dir / "finetune" / "mine.tmp"]
    for path in stale + foreign:
        path.write_bytes(b"partial")
    assert stale_temp_files(run_dir) == sorted(stale)
    run(short, resume=run_dir, console=quiet())
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in foreign)  # not clue_fw's: left alone
    assert (run_dir / "metrics.json").is_file()


def test_unreadable_stored_recipe_is_a_clear_error(tmp_path: Path, short: dict[str, Any]) -> None:
    run_dir = run(short, out=tmp_path / "run", console=quiet()).run_dir
    (run_dir / "metrics.json").unlink()
    (run_dir / "recipe.yaml").write_text("seed: [0\n")
    with pytest.raises(RunDirectoryError, match="recipe.yaml is unreadable"):
        run(short, resume=run_dir, console=quiet())


@pytest.mark.parametrize("flag", ["resume", "out"])
def test_killed_after_taking_the_lock_starts_in_place(
    tmp_path: Path, short: dict[str, Any], flag: str
) -> None:
    """A run killed between locking its directory and writing recipe.yaml leaves only
    .lock (with its dead PID): --resume starts it from scratch, --out counts it empty."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("4242\n")
    run(short, console=quiet(), **{flag: run_dir})
    assert (run_dir / "metrics.json").is_file()
    assert (run_dir / ".lock").read_text() == ""  # released
    log = (run_dir / "run.log").read_text()
    assert ("interrupted before it wrote anything" in log) == (flag == "resume")
