"""``--set key.path=value`` overrides of a recipe mapping (values parsed as YAML)."""

import copy
from typing import Any, NamedTuple

from clue_fw.errors import QUOTE_LIMIT, RecipeError, quote
from clue_fw.recipe.yaml_guard import _safe_yaml


class Override(NamedTuple):
    """One applied ``--set``: its text, key path, and the prefix of the path it created.

    ``created`` ends at the first key that was absent (or null) in the recipe, or is the
    whole path when only existing keys were followed.
    """

    flag: str
    path: tuple[str, ...]
    created: tuple[str, ...]


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a recipe mapping."""
    return _apply_overrides(data, overrides)[0]


def _apply_overrides(
    data: dict[str, Any], overrides: list[str]
) -> tuple[dict[str, Any], list[Override]]:
    data = copy.deepcopy(data)
    applied: list[Override] = []
    for override in overrides:
        if "=" not in override:
            raise RecipeError(f"--set {_flag(override)} must look like key.path=value.")
        path, raw_value = override.split("=", 1)
        keys = path.strip().split(".")
        if not all(keys):
            raise RecipeError(f"--set {_flag(override)}: empty key in path {quote(path)}.")
        value = parse_yaml_value(raw_value, override)
        node: Any = data
        created = len(keys)
        for depth, key in enumerate(keys[:-1]):
            if isinstance(node, dict) and node.get(key) is None:
                created = min(created, depth + 1)
                if _is_index(keys[depth + 1]):
                    where = _dotted(keys[: depth + 1])
                    raise RecipeError(
                        f"--set {_flag(override)}: {where} does not exist, so it has no item "
                        f"{_clip(keys[depth + 1])}; set the whole list instead "
                        f"(--set '{where}=[...]')."
                    )
            node = _descend(node, key, keys[: depth + 1], override)
        last = keys[-1]
        if isinstance(node, list):
            node[_list_index(node, last, keys, override)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError(f"--set {_flag(override)}: {_dotted(keys[:-1])} is not a mapping.")
        applied.append(Override(override, tuple(keys), tuple(keys[:created])))
    return data, applied


def parse_yaml_value(raw: str, override: str) -> Any:
    if not raw.strip():
        return ""
    return _safe_yaml(raw, f"--set {_flag(override)}: the value")


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit()


def _list_index(node: list[Any], key: str, keys: list[str], override: str) -> int:
    if not _is_index(key) or int(key) >= len(node):
        raise RecipeError(
            f"--set {_flag(override)}: {_dotted(keys)} does not exist (list of {len(node)})."
        )
    return int(key)


def _descend(node: Any, key: str, keys: list[str], override: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, keys, override)]
    if not isinstance(node, dict):
        raise RecipeError(f"--set {_flag(override)}: {_dotted(keys[:-1])} is not a mapping.")
    if key not in node or node[key] is None:
        node[key] = {}
    return node[key]


def _flag(flag: str) -> str:
    """A ``--set key=value`` flag for an error message: key and value each cut to
    QUOTE_LIMIT characters (a value may be thousands of characters long)."""
    key, equals, value = flag.partition("=")
    shown = _clip(key) + equals + _clip(value)
    if shown == flag:
        return repr(flag)
    return f"{shown!r} ({len(flag):,} characters)"


def _dotted(keys: list[str]) -> str:
    return ".".join(_clip(key) for key in keys)


def _clip(key: str) -> str:
    return key if len(key) <= QUOTE_LIMIT else key[:QUOTE_LIMIT] + "..."
