"""``<run>/<stage>/history.csv``: written by every stage, equal to its checkpoint's history."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clue_fw import run
from clue_fw.analysis.history_csv import (
    HISTORY_FILE,
    checkpoint_history,
    history_csv_text,
    read_history,
    run_history,
)
from clue_fw.errors import ClueError


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> Path:
    recipe = make_tiny_recipe()
    recipe["pretrain"]["train"]["epochs"] = 2
    recipe["finetune"]["train"]["epochs"] = 2
    out = tmp_path_factory.mktemp("history") / "run"
    return run(recipe, out=out, console=Console(file=io.StringIO())).run_dir


def test_columns_are_the_union_of_keys_in_first_seen_order() -> None:
    text = history_csv_text([{"epoch": 0, "valid a": 0.5}, {"epoch": 1, "loss": 2.0, "best": "*"}])
    assert text.splitlines() == ["epoch,valid a,loss,best", "0,0.5,,", "1,,2.0,*"]


def test_every_stage_writes_its_history(finished: Path) -> None:
    pretrain = read_history(finished / "pretrain" / HISTORY_FILE)
    assert [row["epoch"] for row in pretrain] == [1.0, 2.0]
    assert {"loss", "z_std", "seq/s", "seconds"} <= set(pretrain[0])
    finetune = read_history(finished / "finetune" / HISTORY_FILE)
    assert [row["epoch"] for row in finetune] == [0.0, 1.0, 2.0]
    assert "loss" not in finetune[0] and "valid recall@10" in finetune[0]  # before training
    assert {"loss", "valid mrr@10", "eval seconds", "seq/s"} <= set(finetune[1])
    for stage in ("pretrain", "finetune"):  # the very rows of the checkpoint, nothing more
        rows = read_history(finished / stage / HISTORY_FILE)
        assert rows == checkpoint_history(finished / stage / "last.safetensors")
    assert not list(finished.rglob("*.tmp"))


def test_resume_rewrites_the_file_from_the_checkpoint(
    finished: Path, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> None:
    path = finished / "finetune" / HISTORY_FILE
    expected = path.read_text()
    with path.open("a") as handle:  # a row of an epoch the checkpoint does not have
        handle.write("3,0.1,0.1,0.1,0.1,1.0,100,0.1,\n")
    (finished / "finetune" / f".{HISTORY_FILE}.x1.tmp").write_text("epoch\n9\n")  # a cut write
    (finished / "metrics.json").unlink()  # make --resume load the stages again
    recipe = make_tiny_recipe()
    recipe["pretrain"]["train"]["epochs"] = 2
    recipe["finetune"]["train"]["epochs"] = 2
    run(recipe, resume=finished, console=Console(file=io.StringIO()))
    assert path.read_text() == expected
    assert not list(finished.rglob("*.tmp"))


def test_run_history_falls_back_to_the_checkpoint(finished: Path, tmp_path: Path) -> None:
    found = run_history(finished)
    assert set(found) == {"pretrain", "finetune"} and len(found["finetune"]) == 3
    with pytest.raises(ClueError, match="not a clue_fw run directory"):
        run_history(tmp_path)


def test_a_damaged_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    path.write_text("epoch,loss\n1,2.0\n2\n")
    with pytest.raises(ClueError, match=r"line 3: 1 cells for 2 columns"):
        read_history(path)
    path.write_text("loss\n1\n")
    with pytest.raises(ClueError, match="no header line with an 'epoch' column"):
        read_history(path)
