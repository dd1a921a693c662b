"""The identity of a run: every file carries it, and --resume and init_from check it."""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from safetensors import safe_open
from safetensors.torch import save_file

from clue_fw.errors import CheckpointError, RunDirectoryError
from clue_fw.recipe import load_recipe, validate_recipe
from clue_fw.runner import run
from clue_fw.running.identity import RunIdentity, recipe_sha256


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three finished tiny runs: seed 0, seed 1, and seed 0 again (another run id)."""
    from conftest import TINY_RECIPE

    folder = tmp_path_factory.mktemp("runs")
    found = {}
    for name, seed in (("seed0", 0), ("seed1", 1), ("seed0-again", 0)):
        recipe = copy.deepcopy(TINY_RECIPE)
        recipe["seed"] = seed
        found[name] = run(recipe, out=folder / name, console=quiet()).run_dir
    return found


def recipe_of(run_dir: Path) -> Any:
    return load_recipe(run_dir / "recipe.yaml")


def interrupted_copy(source: Path, to: Path) -> Path:
    shutil.copytree(source, to)
    (to / "metrics.json").unlink()
    return to


def metadata(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(json.loads((handle.metadata() or {})["clue_fw"]))


def rewrite_metadata(path: Path, change: Any) -> None:
    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    meta = json.loads(header["clue_fw"])
    change(meta)
    save_file(tensors, str(path), metadata={"clue_fw": json.dumps(meta)})


def test_every_file_carries_the_run_identity(runs: dict[str, Path]) -> None:
    run_dir = runs["seed0"]
    first_line = (run_dir / "recipe.yaml").read_text().splitlines()[0]
    identity = RunIdentity.from_header(first_line)
    assert identity is not None and len(identity.run_id) == 32
    recipe_json = yaml.safe_load((run_dir / "recipe.yaml").read_text())  # the line is a comment
    assert identity.recipe_sha256 == recipe_sha256(recipe_json)
    checkpoints = sorted(run_dir.rglob("*.safetensors"))
    assert len(checkpoints) == 4
    for path in checkpoints:
        assert metadata(path)["run"] == identity.to_json(), path
    assert json.loads((run_dir / "metrics.json").read_text())["run"] == identity.to_json()
    # two runs of one recipe share the recipe hash, never the run id
    again = RunIdentity.from_header(
        (runs["seed0-again"] / "recipe.yaml").read_text().split("\n")[0]
    )
    assert again is not None
    assert again.recipe_sha256 == identity.recipe_sha256 and again.run_id != identity.run_id


def test_a_runs_recipe_yaml_still_loads_as_a_recipe(runs: dict[str, Path]) -> None:
    recipe = recipe_of(runs["seed0"])
    assert recipe.seed == 0
    stored = yaml.safe_load((runs["seed0"] / "recipe.yaml").read_text())
    assert validate_recipe(stored).model_dump(mode="json") == stored


@pytest.mark.parametrize(
    ("relative", "remove"),
    [
        ("finetune/best.safetensors", []),
        ("finetune/last.safetensors", []),
        ("pretrain/encoder.safetensors", ["finetune"]),
        ("pretrain/last.safetensors", ["finetune"]),
    ],
)
@pytest.mark.parametrize("donor", ["seed1", "seed0-again"])
def test_a_checkpoint_copied_from_another_run_is_refused(
    runs: dict[str, Path], tmp_path: Path, relative: str, remove: list[str], donor: str
) -> None:
    run_dir = interrupted_copy(runs["seed0"], tmp_path / "run")
    for name in remove:
        shutil.rmtree(run_dir / name)
    shutil.copy(runs[donor] / relative, run_dir / relative)
    with pytest.raises(CheckpointError) as info:
        run(recipe_of(run_dir), resume=run_dir, console=quiet())
    message = str(info.value)
    assert f"{run_dir / relative} was written by another run" in message
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize("donor", ["seed1", "seed0-again"])
def test_a_metrics_json_copied_from_another_run_is_refused(
    runs: dict[str, Path], tmp_path: Path, donor: str
) -> None:
    run_dir = interrupted_copy(runs["seed0"], tmp_path / "run")
    shutil.copy(runs[donor] / "metrics.json", run_dir / "metrics.json")
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(
        RunDirectoryError, match=r"metrics.json and .*recipe.yaml name different runs"
    ):
        run(recipe_of(run_dir), resume=run_dir, console=quiet())
    assert (run_dir / "metrics.json").read_bytes() == before
    (run_dir / "metrics.json").unlink()  # as the message says: evaluate again
    result = run(recipe_of(run_dir), resume=run_dir, console=quiet())
    original = json.loads((runs["seed0"] / "metrics.json").read_text())
    assert result.metrics["test"] == original["test"]


def test_resuming_a_finished_run_checks_and_returns_its_metrics(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = shutil.copytree(runs["seed0"], tmp_path / "run")
    result = run(recipe_of(run_dir), resume=run_dir, console=quiet())
    assert result.metrics == json.loads((runs["seed0"] / "metrics.json").read_text())
    assert "nothing to resume" in (run_dir / "run.log").read_text()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda meta: meta.pop("run"), "carries no clue_fw run identity"),
        (lambda meta: meta["run"].update(run_id="x" * 32), "carries no clue_fw run identity"),
        (lambda meta: meta["recipe"].update(seed=5), "is inconsistent"),
    ],
    ids=["absent", "malformed", "edited-recipe"],
)
def test_a_checkpoint_without_a_consistent_identity_is_refused(
    runs: dict[str, Path], tmp_path: Path, change: Any, expected: str
) -> None:
    run_dir = interrupted_copy(runs["seed0"], tmp_path / "run")
    rewrite_metadata(run_dir / "finetune" / "last.safetensors", change)
    with pytest.raises(CheckpointError, match=expected):
        run(recipe_of(run_dir), resume=run_dir, console=quiet())


def test_an_edited_recipe_yaml_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    run_dir = interrupted_copy(runs["seed0"], tmp_path / "run")
    text = (run_dir / "recipe.yaml").read_text()
    (run_dir / "recipe.yaml").write_text(text.replace("\nseed: 0\n", "\nseed: 1\n"))
    edited = recipe_of(run_dir)
    assert edited.seed == 1
    with pytest.raises(RunDirectoryError, match="recipe.yaml was edited after the run started"):
        run(edited, resume=run_dir, console=quiet())
    (run_dir / "recipe.yaml").write_text(text.split("\n", 1)[1])  # no identity line
    with pytest.raises(RunDirectoryError, match="does not start with the run identity line"):
        run(recipe_of(run_dir), resume=run_dir, console=quiet())


# --------------------------------------------------------------------------- init_from


def finetune_from(run_dir: Path, init_from: Path) -> dict[str, Any]:
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["pretrain"] = None
    recipe["finetune"]["init_from"] = str(init_from)
    recipe["finetune"]["train"]["epochs"] = 1
    return recipe


def test_init_from_checks_that_the_directory_wrote_the_encoder(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    # seed1's encoder in a copy of seed0's run directory: the directory did not write it
    host = shutil.copytree(runs["seed0"], tmp_path / "host")
    shutil.copy(runs["seed1"] / "pretrain" / "encoder.safetensors", host / "pretrain")
    with pytest.raises(CheckpointError, match=r"was not written by the run in .*host"):
        run(finetune_from(runs["seed0"], host), out=tmp_path / "a", console=quiet())
    assert not (tmp_path / "a").exists()
    # named as a file, another run's encoder is fine: it is consistent in itself
    encoder = host / "pretrain" / "encoder.safetensors"
    result = run(finetune_from(runs["seed0"], encoder), out=tmp_path / "b", console=quiet())
    assert result.metrics["epochs"] == 1


def test_init_from_refuses_an_inconsistent_encoder(runs: dict[str, Path], tmp_path: Path) -> None:
    encoder = tmp_path / "encoder.safetensors"
    shutil.copy(runs["seed0"] / "pretrain" / "encoder.safetensors", encoder)
    rewrite_metadata(encoder, lambda meta: meta["recipe"].update(seed=3))
    with pytest.raises(CheckpointError, match=r"finetune.init_from: .* is inconsistent"):
        run(finetune_from(runs["seed0"], encoder), out=tmp_path / "a", console=quiet())
    assert not (tmp_path / "a").exists()
