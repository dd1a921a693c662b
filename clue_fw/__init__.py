"""clue_fw: contrastive pre-training of transferable user representations (CLUE).

The library API in one place::

    from clue_fw import load_recipe, recipe_model, run

    recipe = load_recipe("recipes/quickstart.yaml", overrides=["seed=1"])
    result = run(recipe, out="runs/quickstart")

Plugins read their side files (item attributes, say) with ``read_json_file`` or
``read_file``: the same guards as the core's readers (a regular file, under
``$CLUE_MAX_FILE_BYTES``, no traceback on hostile content).

The names below are imported on first use (PEP 562), so ``import clue_fw`` (and the
``clue --help`` that imports it) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clue_fw._version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from clue_fw.components import BuildContext
    from clue_fw.errors import ClueError
    from clue_fw.file_safety import read_file, read_json_file
    from clue_fw.inference import load_run
    from clue_fw.recipe import load_recipe, recipe_model, validate_recipe
    from clue_fw.registry import get_registry
    from clue_fw.runner import RunResult, run

#: public name -> the module that defines it
_LAZY: dict[str, str] = {
    "BuildContext": "clue_fw.components",
    "ClueError": "clue_fw.errors",
    "load_run": "clue_fw.inference",
    "load_recipe": "clue_fw.recipe",
    "recipe_model": "clue_fw.recipe",
    "validate_recipe": "clue_fw.recipe",
    "read_file": "clue_fw.file_safety",
    "read_json_file": "clue_fw.file_safety",
    "get_registry": "clue_fw.registry",
    "RunResult": "clue_fw.runner",
    "run": "clue_fw.runner",
}

__all__ = [
    "BuildContext",
    "ClueError",
    "RunResult",
    "__version__",
    "get_registry",
    "load_recipe",
    "load_run",
    "read_file",
    "read_json_file",
    "recipe_model",
    "run",
    "validate_recipe",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first access and cache it in the package namespace."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clue_fw' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
