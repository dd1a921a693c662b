"""The recipe package (issue 19, move 1): every name ``clue_fw.recipe`` had before the split
is importable from it as the very object of its new home, the new homes import no torch,
and a recipe satisfies the typed protocol that its readers take."""

from __future__ import annotations

import subprocess
import sys

import pytest

import clue_fw.recipe as recipe_package
from clue_fw.recipe import RecipeLike, training_batch_sizes, validate_recipe

#: Every public name of the old clue_fw/recipe.py -> the module that now holds it.
HOMES: dict[str, str] = {
    **dict.fromkeys(
        ("MAX_LEN", "SequenceFileData", "InteractionTableData", "SyntheticData", "DataSpec"),
        "clue_fw.data.specs",
    ),
    **dict.fromkeys(
        ("FLOAT32_MAX", "TrainSpec", "EvalSpec", "OPTIMISATION_DEFAULTS", "LR_SCALE_BATCH"),
        "clue_fw.training.specs",
    ),
    "StrictModel": "clue_fw.specs",
    **dict.fromkeys(
        ("MAX_CUDA_INDEX", "MAX_OBJECTIVE_DIM", "MAX_NAME_LENGTH", "default_name", "pretrains"),
        "clue_fw.recipe.checks",
    ),
    **dict.fromkeys(("recipe_model", "clear_recipe_model_cache"), "clue_fw.recipe.model"),
    **dict.fromkeys(
        ("format_validation_error", "INT64_MIN", "INT64_MAX"), "clue_fw.recipe.messages"
    ),
    **dict.fromkeys(
        (
            "MAX_RECIPE_BYTES",
            "MAX_YAML_ALIASES",
            "MAX_YAML_NODES",
            "MAX_YAML_DEPTH",
            "parse_yaml",
            "read_recipe_file",
            "recipe_to_yaml",
        ),
        "clue_fw.recipe.yaml_guard",
    ),
    **dict.fromkeys(
        ("Override", "apply_overrides", "parse_yaml_value"), "clue_fw.recipe.overrides"
    ),
    **dict.fromkeys(("validate_recipe", "load_recipe"), "clue_fw.recipe.loading"),
}


@pytest.mark.parametrize("name", sorted(HOMES))
def test_old_names_stay_importable(name: str) -> None:
    home = __import__(HOMES[name], fromlist=[name])
    assert getattr(recipe_package, name) is getattr(home, name)
    assert name in recipe_package.__all__


@pytest.mark.parametrize(
    "module",
    ["clue_fw.data.specs", "clue_fw.training.specs", "clue_fw.recipe.protocol"],
)
def test_spec_homes_import_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_recipe_is_recipe_like_and_names_its_batch_sizes(
    tiny_recipe: dict[str, object],
) -> None:
    recipe = validate_recipe(tiny_recipe)
    for attribute in ("name", "seed", "device", "data", "backbone", "pretrain", "finetune"):
        assert hasattr(recipe, attribute)
        assert attribute in dir(RecipeLike)
    sizes = training_batch_sizes(recipe)
    assert list(sizes) == (["pretrain"] if recipe.pretrain else []) + ["finetune"]
    assert sizes["finetune"] == recipe.finetune.train.batch_size
