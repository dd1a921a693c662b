"""Tests of ``clue evaluate`` (:mod:`clue_fw.cli_evaluate`) and
:func:`clue_fw.inference.evaluation.evaluate_run`.

One tiny run is made per module; the command runs in-process through
:func:`clue_fw.cli.main`. The two-process case is in
``tests/distributed/test_evaluate_processes.py``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_main import main_exit
from rich.console import Console

from clue_fw import run
from clue_fw.errors import ClueError
from clue_fw.inference.evaluation import evaluate_run


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory, make_tiny_recipe: Callable[[], dict[str, Any]]
) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    recipe = make_tiny_recipe()
    recipe["finetune"]["train"]["epochs"] = 2
    recipe["finetune"]["eval"] = {"batch_size": 48}  # several batches, the last one short
    return run(recipe, out=root / "run", console=Console(file=io.StringIO())).run_dir


def test_best_checkpoint_gives_the_runs_own_metrics_exactly(finished: Path) -> None:
    found = evaluate_run(finished)
    metrics = json.loads((finished / "metrics.json").read_text())
    assert found["valid"] == metrics["valid"] and found["test"] == metrics["test"]
    assert found["checkpoint"] == "best" and found["epoch"] == metrics["best_epoch"]
    assert found["processes"] == 1 and found["run_id"] == metrics["run"]["run_id"]


def test_cli_prints_and_writes_json(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(finished), "--checkpoint", "last", "--split", "test", "--out", str(out)]
    code, stdout, _ = main_exit(argv, capsys)
    assert code == 0
    written = json.loads(out.read_text())
    assert json.loads(stdout) == written
    assert set(written) >= {"test", "epoch", "checkpoint"} and "valid" not in written
    assert written["checkpoint"] == "last" and written["epoch"] == 2


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["evaluate", "{missing}"], "Run directory not found"),
        (["evaluate", "{empty}"], "holds no recipe.yaml"),
        (["evaluate", "{run}", "--checkpoint", "middle"], "checkpoint must be 'best'"),
        (["evaluate", "{run}", "--split", "train"], "splits must be some of"),
        (["evaluate", "{unfinished}"], "has not finished"),
        (["evaluate", "{unfinished}", "--checkpoint", "last"], "no fine-tuning epoch"),
        (["evaluate", "{run}", "--out", "{empty}"], "must name a file"),
    ],
)
def test_bad_input_exits_2_with_one_message(
    finished: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    needle: str,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    unfinished = tmp_path / "unfinished"  # a run killed before fine-tuning wrote anything
    shutil.copytree(finished, unfinished)
    shutil.rmtree(unfinished / "finetune")
    (unfinished / "metrics.json").unlink()
    (unfinished / ".lock").unlink(missing_ok=True)
    places = {"missing": tmp_path / "nope", "empty": empty, "run": finished}
    places["unfinished"] = unfinished
    code, _, err = main_exit([a.format(**places) for a in argv], capsys)
    assert code == 2, err
    assert needle in " ".join(err.split()) and "Traceback" not in err


def test_a_checkpoint_of_another_run_is_refused(finished: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(finished, other)
    first = (other / "recipe.yaml").read_text().splitlines()
    # another run id on the identity line: the checkpoints no longer belong to it
    first[0] = re.sub(r"run [0-9a-f]{32}", "run " + "0" * 32, first[0])
    (other / "recipe.yaml").write_text("\n".join(first) + "\n")
    with pytest.raises(ClueError):
        evaluate_run(other, "last")
