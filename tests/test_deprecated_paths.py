"""Names moved to another module stay importable from their old path, with a
DeprecationWarning that names the new one (issue 19: a plugin's imports keep working)."""

from __future__ import annotations

import importlib

import pytest

#: old module -> name -> the module that now holds it.
MOVED: dict[str, dict[str, str]] = {
    "clue_fw.training.checkpoint": {
        "atomic_write_json": "clue_fw.output_target",
        "atomic_write_bytes": "clue_fw.output_target",
    },
}

CASES = [(old, name, new) for old, names in MOVED.items() for name, new in names.items()]


@pytest.mark.parametrize(("old", "name", "new"), CASES, ids=[f"{o}.{n}" for o, n, _ in CASES])
def test_moved_name_warns_and_is_the_same_object(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        found = getattr(module, name)
    assert found is getattr(importlib.import_module(new), name)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    module = importlib.import_module("clue_fw.training.checkpoint")
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018
