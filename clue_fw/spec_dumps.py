"""Recipe dumps that stay the same when a spec gains a field: leave it out at its default.

A recipe's sha256 is taken over its dump, and ``--resume`` refuses a recipe whose sha256
changed. A field added later is therefore left out of the dump while it holds the value
that reproduces the old behaviour, so recipes written before it existed keep their
sha256 (``tests/test_recipe_hashes.py``). Each spec's ``model_serializer`` calls
:func:`drop_defaults` with its own table of such fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def drop_defaults(data: Any, spec: object, defaults: Mapping[str, Any]) -> Any:
    """``data`` (a spec's serialised dict) without each key of ``defaults`` whose value on
    ``spec`` equals its default there; anything that is not a dict passes unchanged."""
    if isinstance(data, dict):
        for key, default in defaults.items():
            if key in data and getattr(spec, key) == default:
                del data[key]
    return data
