"""Old import paths that keep working, with a warning that names the new one.

A name moved to another module stays importable from its old module through a module
``__getattr__`` built here (PEP 562), as timm keeps renamed models loading::

    __getattr__ = moved_names(__name__, {"atomic_write_json": "clue_fw.file_safety"})

``from clue_fw.old import name`` then returns the object of the new module and warns
with a :class:`DeprecationWarning` that says where to import it from.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_names(old_module: str, new_modules: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old_module``: each name of ``new_modules`` (name ->
    the module that now holds it) is looked up there, with a DeprecationWarning."""

    def __getattr__(name: str) -> Any:
        new_module = new_modules.get(name)
        if new_module is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(
            f"{old_module}.{name} moved to {new_module}.{name}; import it from there "
            "(the old path will be removed in a later version).",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(new_module), name)

    return __getattr__
