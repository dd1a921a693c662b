"""Recipes: validated pydantic models, loaded from YAML or built in code.

A recipe is read in four steps, one module each:

- :mod:`~clue_fw.recipe.yaml_guard` reads the YAML (YAML 1.2 numbers, size, alias and
  depth limits, duplicate keys) into a mapping;
- :mod:`~clue_fw.recipe.overrides` applies ``--set key.path=value`` flags to it;
- :mod:`~clue_fw.recipe.model` validates it against the Recipe model assembled from the
  registry (the component parts are discriminated unions over the registered specs),
  with the value checks of :mod:`~clue_fw.recipe.checks`;
- :mod:`~clue_fw.recipe.messages` words every problem with its recipe path (and the
  ``--set`` flag behind it), and :mod:`~clue_fw.recipe.loading` ties the steps together.

The sections that are not components live next to their readers: the ``data`` specs in
:mod:`clue_fw.data.specs`, ``train``/``eval`` in :mod:`clue_fw.training.specs`.
:class:`~clue_fw.recipe.protocol.RecipeLike` names what the runner and stages read of
a validated recipe. Every name is importable from here, as before the split.
"""

from clue_fw.data.specs import (
    MAX_LEN,
    DataSpec,
    InteractionTableData,
    SequenceFileData,
    SyntheticData,
)
from clue_fw.recipe.checks import (
    MAX_CUDA_INDEX,
    MAX_NAME_LENGTH,
    MAX_OBJECTIVE_DIM,
    default_name,
    position_states_problem,
    pretrains,
    training_batch_sizes,
)
from clue_fw.recipe.loading import _validate, load_recipe, validate_recipe
from clue_fw.recipe.messages import INT64_MAX, INT64_MIN, format_validation_error
from clue_fw.recipe.model import clear_recipe_model_cache, recipe_model
from clue_fw.recipe.overrides import Override, _apply_overrides, apply_overrides, parse_yaml_value
from clue_fw.recipe.protocol import RecipeLike
from clue_fw.recipe.yaml_guard import (
    MAX_RECIPE_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    parse_yaml,
    read_recipe_file,
    recipe_to_yaml,
)
from clue_fw.specs import StrictModel
from clue_fw.training.specs import (
    FLOAT32_MAX,
    LR_SCALE_BATCH,
    OPTIMISATION_DEFAULTS,
    EvalSpec,
    TrainSpec,
)

__all__ = [
    "FLOAT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "LR_SCALE_BATCH",
    "MAX_CUDA_INDEX",
    "MAX_LEN",
    "MAX_NAME_LENGTH",
    "MAX_OBJECTIVE_DIM",
    "MAX_RECIPE_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "OPTIMISATION_DEFAULTS",
    "DataSpec",
    "EvalSpec",
    "InteractionTableData",
    "Override",
    "RecipeLike",
    "SequenceFileData",
    "StrictModel",
    "SyntheticData",
    "TrainSpec",
    "_apply_overrides",
    "_validate",
    "apply_overrides",
    "clear_recipe_model_cache",
    "default_name",
    "format_validation_error",
    "load_recipe",
    "parse_yaml",
    "parse_yaml_value",
    "position_states_problem",
    "pretrains",
    "read_recipe_file",
    "recipe_model",
    "recipe_to_yaml",
    "training_batch_sizes",
    "validate_recipe",
]
