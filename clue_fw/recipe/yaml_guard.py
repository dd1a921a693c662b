"""The guarded YAML loader of recipes: YAML 1.2 numbers, size, alias and depth limits.

``parse_yaml`` and ``read_recipe_file`` turn every failure (bad YAML, a YAML bomb,
duplicate keys, a non-mapping) into a :class:`~clue_fw.errors.RecipeError`.
"""

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from clue_fw.errors import RecipeError, quote
from clue_fw.file_safety import read_file

MAX_RECIPE_BYTES = 1 << 20
"""Recipes larger than this (1 MiB) are refused before parsing."""
MAX_YAML_ALIASES = 100
"""At most this many ``*alias`` references per document (a guard against YAML bombs)."""
MAX_YAML_NODES = 100_000
"""At most this many nodes once every alias is expanded (a billion-laughs guard)."""
MAX_YAML_DEPTH = 100
"""Collections may nest at most this deep (PyYAML composes recursively)."""


class _YamlLimit(Exception):
    """A YAML document breaks one of the limits above; the message says which."""


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and nesting depth while it composes the node graph."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise _YamlLimit(f"it nests deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


# Numbers follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 rules: 1.1 reads `010`
# as octal 8, `1:30` as sexagesimal 90, `0b101` as 5 and `1_0` as 10, and reads `1e-3`
# as a string. Here an int is decimal `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`; a
# float is a decimal with a point and/or an exponent, `.inf` or `.nan`. A decimal int with
# a leading zero (`010`) is refused rather than read as 8 (1.1) or 10 (1.2), so a recipe
# written for either reading never changes meaning silently. Anything else (`1:30`,
# `0b101`, `1_0`) stays a string, which strict validation refuses with the field's path.
_YAML12_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_YAML12_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_GuardedLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Ints first: a float pattern also matches plain digits.
_GuardedLoader.add_implicit_resolver("tag:yaml.org,2002:int", _YAML12_INT, list("-+0123456789"))
_GuardedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789.")
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if not _YAML12_INT.match(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a YAML 1.2 integer", node.start_mark
        )
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    if len(text.lstrip("-+")) > 1 and text.lstrip("-+").startswith("0"):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"the integer {text} has a leading zero (YAML 1.1 reads it as octal, YAML 1.2 "
            "as decimal); write it without leading zeros, or as 0o... for octal",
            node.start_mark,
        )
    return int(text)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if not _YAML12_FLOAT.match(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a YAML 1.2 float", node.start_mark
        )
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


_GuardedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_GuardedLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_node_graph(root: yaml.Node) -> None:
    """Refuse recursive aliases, duplicate keys, and alias expansion beyond MAX_YAML_NODES.

    Iterative and linear in the number of distinct nodes: aliases share node objects,
    so expanded sizes are summed from memoised subtree sizes, never by expanding.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            continue
        if key in on_path:
            line = node.start_mark.line + 1
            raise _YamlLimit(f"an anchor is used inside itself (recursive alias, line {line})")
        if key in size:
            continue  # an alias to a node already measured
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    if size[id(root)] > MAX_YAML_NODES:
        raise _YamlLimit(
            f"its aliases expand to {size[id(root)]:,} YAML nodes; at most {MAX_YAML_NODES:,} "
            "are allowed (a guard against YAML bombs)"
        )


def _check_duplicate_keys(node: yaml.MappingNode) -> None:
    first: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        line = key_node.start_mark.line + 1
        key = (key_node.tag, key_node.value)
        if key in first:
            raise _YamlLimit(
                f"key {quote(key_node.value)} appears twice in one mapping "
                f"(lines {first[key]} and {line})"
            )
        first[key] = line


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the limits above (raises yaml.YAMLError or _YamlLimit)."""
    if len(text) > MAX_RECIPE_BYTES:
        raise _YamlLimit(f"it is larger than {MAX_RECIPE_BYTES // (1 << 20)} MiB")
    loader = _GuardedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if loader.aliases > MAX_YAML_ALIASES:
            raise _YamlLimit(
                f"it uses {loader.aliases} YAML aliases; at most {MAX_YAML_ALIASES} are allowed "
                "(a guard against YAML bombs)"
            )
        _check_node_graph(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{where}: {context}, {problem}" if context else f"{where}: {problem}"


def _safe_yaml(text: str, what: str) -> Any:
    """Load YAML text, turning every failure into a RecipeError that starts with ``what``."""
    try:
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{what} is not valid YAML{_yaml_problem(exc)}.") from None
    except _YamlLimit as exc:
        raise RecipeError(f"{what} is refused: {exc}.") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values such as 2001-13-01 or `!!int abc`.
        raise RecipeError(
            f"{what} is not valid YAML: a value cannot be read ({type(exc).__name__}: {exc})."
        ) from None


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse recipe YAML into a mapping (RecipeError for bad YAML, bombs or a non-mapping)."""
    data = _safe_yaml(text, f"Recipe {source}")
    if data is None:
        raise RecipeError(
            f"Recipe {source} is empty; it must be a YAML mapping with data, backbone and "
            "finetune keys."
        )
    if not isinstance(data, dict):
        raise RecipeError(
            f"Recipe {source} must be a YAML mapping with data, backbone and finetune keys; "
            f"it holds a {type(data).__name__}."
        )
    return data


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe file (a regular file of at most 1 MiB, UTF-8) into a mapping."""
    path = Path(path)
    raw = read_file(path, "recipe file", limit=MAX_RECIPE_BYTES, error=RecipeError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"Cannot read recipe {path}: {exc}.") from None
    return parse_yaml(text, str(path))


def recipe_to_yaml(recipe: BaseModel) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
