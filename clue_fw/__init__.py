"""clue_fw: contrastive pre-training of transferable user representations (CLUE).

The library API in one place::

    from clue_fw import load_recipe, recipe_model, run

    recipe = load_recipe("recipes/quickstart.yaml", overrides=["seed=1"])
    result = run(recipe, out="runs/quickstart")
"""

from __future__ import annotations

__version__ = "0.1.0"

from clue_fw.components import BuildContext  # noqa: E402
from clue_fw.errors import ClueError  # noqa: E402
from clue_fw.inference import load_run  # noqa: E402
from clue_fw.recipe import load_recipe, recipe_model, validate_recipe  # noqa: E402
from clue_fw.registry import get_registry  # noqa: E402
from clue_fw.runner import RunResult, run  # noqa: E402

__all__ = [
    "BuildContext",
    "ClueError",
    "RunResult",
    "__version__",
    "get_registry",
    "load_recipe",
    "load_run",
    "recipe_model",
    "run",
    "validate_recipe",
]
