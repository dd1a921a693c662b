"""Defects found in the second hostile-input review: each test fails without its fix."""

from __future__ import annotations

import copy
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from clue_fw.errors import CheckpointError, RecipeError, RunDirectoryError
from clue_fw.recipe import validate_recipe
from clue_fw.runner import run
from clue_fw.running.run_directory import default_run_dir


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture
def short(tiny_recipe: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(tiny_recipe)
    data["finetune"]["train"]["epochs"] = 1
    return data


@pytest.mark.parametrize("decoy", ["recipe.yaml", ".lock"])
def test_overwrite_needs_a_run_not_a_file_called_like_one(
    tmp_path: Path, short: dict[str, Any], decoy: str
) -> None:
    """A user's own recipe.yaml (or another tool's .lock) does not make a run directory."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / decoy).write_text("seed: 0\n")
    (project / "thesis.tex").write_text("keep me")
    (project / "sub" / "data.csv").write_text("1,2\n")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    with pytest.raises(RunDirectoryError, match="is not a clue_fw run directory"):
        run(validate_recipe(short), out=project, overwrite=True, console=quiet())
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_overwrite_replaces_a_real_run(tmp_path: Path, short: dict[str, Any]) -> None:
    first = run(validate_recipe(short), out=tmp_path / "run", console=quiet())
    (first.run_dir / "notes.txt").write_text("inside a run")
    second = run(validate_recipe(short), out=tmp_path / "run", overwrite=True, console=quiet())
    assert not (second.run_dir / "notes.txt").exists()
    assert second.metrics["run"]["run_id"] != first.metrics["run"]["run_id"]


@pytest.mark.parametrize(
    ("recipe", "error"),
    [("tiny.yaml", RecipeError), (None, RecipeError), ([1, 2], RecipeError)],
)
def test_run_refuses_what_is_not_a_recipe(recipe: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="takes a validated recipe or a recipe mapping"):
        run(recipe)


@pytest.mark.parametrize("out", [5, b"x"])
def test_run_refuses_an_out_that_is_not_a_path(short: dict[str, Any], out: Any) -> None:
    with pytest.raises(RunDirectoryError, match="--out must be a path"):
        run(validate_recipe(short), out=out)


def test_runs_in_threads_give_the_sequential_result(tmp_path: Path, short: dict[str, Any]) -> None:
    """Threads share torch's random state: runs in one process take turns."""
    alone = run(validate_recipe(short), out=tmp_path / "alone", console=quiet()).metrics
    results: dict[str, Any] = {}

    def one(name: str) -> None:
        results[name] = run(validate_recipe(short), out=tmp_path / name, console=quiet()).metrics

    threads = [threading.Thread(target=one, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in ("a", "b"):
        assert results[name]["test"] == alone["test"]


def test_default_run_directories_of_one_second_differ(short: dict[str, Any]) -> None:
    recipe = validate_recipe(short)
    assert len({default_run_dir(recipe) for _ in range(20)}) > 1


def test_init_from_inside_the_out_being_overwritten_is_refused(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    source = run(validate_recipe(short), out=tmp_path / "source", console=quiet()).run_dir
    fine = copy.deepcopy(short)
    fine["pretrain"] = None
    fine["finetune"]["init_from"] = str(source)
    with pytest.raises(RecipeError, match="lies inside --out"):
        run(validate_recipe(fine), out=source, overwrite=True, console=quiet())
    assert (source / "pretrain" / "encoder.safetensors").is_file()
    assert (source / "metrics.json").is_file()


def test_an_encoder_of_another_length_is_refused_before_the_run_directory_exists(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    source = run(validate_recipe(short), out=tmp_path / "source", console=quiet()).run_dir
    fine = copy.deepcopy(short)
    fine["pretrain"] = None
    fine["finetune"]["init_from"] = str(source)
    fine["data"]["max_len"] = short["data"]["max_len"] - 2
    with pytest.raises(CheckpointError):
        run(validate_recipe(fine), out=tmp_path / "fine", console=quiet())
    assert not (tmp_path / "fine").exists()


def test_resuming_a_fine_tuning_does_not_need_the_init_from_source(
    tmp_path: Path, short: dict[str, Any]
) -> None:
    source = run(validate_recipe(short), out=tmp_path / "source", console=quiet()).run_dir
    fine = copy.deepcopy(short)
    fine["pretrain"] = None
    fine["finetune"]["init_from"] = str(source)
    done = run(validate_recipe(fine), out=tmp_path / "fine", console=quiet())
    (done.run_dir / "metrics.json").unlink()
    source.rename(tmp_path / "moved")
    again = run(validate_recipe(fine), resume=done.run_dir, console=quiet())
    assert again.metrics["test"] == done.metrics["test"]
