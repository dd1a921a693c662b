"""Validating recipes: a mapping or a YAML file in, a Recipe object (or a RecipeError) out."""

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from clue_fw.errors import RecipeError
from clue_fw.recipe.checks import default_name
from clue_fw.recipe.messages import (
    _describe_problems,
    _non_utf8_strings,
    _out_of_range_integers,
    _problems,
)
from clue_fw.recipe.model import recipe_model
from clue_fw.recipe.overrides import Override, _apply_overrides
from clue_fw.recipe.yaml_guard import read_recipe_file
from clue_fw.registry import Registry


def validate_recipe(
    data: dict[str, Any], source: str = "<recipe>", registry: Registry | None = None
) -> Any:
    """Validate a recipe mapping into a Recipe object (RecipeError on any problem)."""
    return _validate(data, source, registry, [])


def _validate(
    data: dict[str, Any], source: str, registry: Registry | None, overrides: list[Override]
) -> Any:
    model = recipe_model(registry)
    problems = _out_of_range_integers(data) + _non_utf8_strings(data)
    recipe = None
    try:
        # strict=True reaches nested models whose own config is lax (a plugin's too).
        recipe = model.model_validate(data, strict=True)
    except ValidationError as exc:
        found = {problem.parts for problem in problems}
        problems += [p for p in _problems(exc, data) if p.parts not in found]
    if problems:
        raise RecipeError(_describe_problems(problems, source, overrides)) from None
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read, override and validate a YAML recipe; default its name to the file stem.

    A validation error caused by a ``--set`` override names that flag.
    """
    data = read_recipe_file(path)
    data, applied = _apply_overrides(data, overrides or [])
    data.setdefault("name", default_name(Path(path).stem))
    return _validate(data, str(path), None, applied)
