"""Every shipped recipe keeps the recipe sha256 it had, so runs started by an earlier
version still resume (``--resume`` refuses a recipe whose hash changed).

The pinned hashes (``shipped_recipe_sha256.json``) are computed as a run computes them:
:func:`~clue_fw.running.identity.recipe_sha256` of the validated recipe's JSON dump
(``RunDirectory.open``). A refactoring that changes a default, a field's spelling or the
order of a dump fails here, naming the recipe. A new recipe may be added to the file; a pinned
hash is never edited to make this test pass. It changes only with a deliberate change of
what the recipe trains, said in the recipe's header and the commit (then a run started
from the old file rightly refuses to resume from the new one): ml30_dropout_cpu.yaml's
fine-tuning learning rate went from 0.001 to 0.002 on 2026-12-07 (docs/results/speed.md).
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from clue_fw.recipe import load_recipe
from clue_fw.registry import build_registry, reset_registry
from clue_fw.running.identity import recipe_sha256

REPO = Path(__file__).resolve().parent.parent
PINNED: dict[str, str] = json.loads(
    (Path(__file__).parent / "shipped_recipe_sha256.json").read_text()
)
#: Shipped recipes that need a plugin of plugins/ (on pytest's pythonpath).
PLUGIN_RECIPES = {"beauty50_s3rec.yaml": "clue_s3rec"}


@contextlib.contextmanager
def plugins_for(path: Path) -> Iterator[None]:
    """Register the plugin ``path`` needs, if any, for the duration of the block."""
    module = PLUGIN_RECIPES.get(path.name)
    if module is None:
        yield
        return
    reset_registry(build_registry(extra_plugins=[(importlib.import_module(module), module)]))
    try:
        yield
    finally:
        reset_registry(None)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_recipe_keeps_its_sha256(name: str) -> None:
    path = REPO / name
    assert path.is_file(), f"{name} is pinned in shipped_recipe_sha256.json but gone"
    with plugins_for(path):
        found = recipe_sha256(load_recipe(path).model_dump(mode="json"))
    assert found == PINNED[name], f"{name}: recipe sha256 changed; runs it started cannot resume"
