"""Validation-error wording: every problem of a recipe in one paragraph, with its path.

Pydantic's errors are turned into recipe paths (union tags skipped), strict-type failures
say what was given, and a problem caused by a ``--set`` override names that flag.
Integers beyond 64 bits and strings UTF-8 cannot encode are found here too, before
pydantic sees them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from pydantic import ValidationError

from clue_fw.errors import quote
from clue_fw.recipe.overrides import Override, _clip, _dotted, _flag


def _readable_location(loc: tuple[Any, ...], data: Any) -> list[str]:
    """Recipe path of a pydantic error, skipping union tags that are not real keys."""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(node, dict) and step in node:
            parts.append(str(step))
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            parts.append(str(step))
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and not parts[-1:] == [step]:
            # A key that is absent in the input (missing field) or a union tag.
            if step in ("sequences", "interactions", "synthetic") or _looks_like_tag(node, step):
                continue
            parts.append(step)
            node = None
        else:
            continue
    return parts


def _looks_like_tag(node: dict[str, Any], step: str) -> bool:
    return node.get("kind") == step or node.get("format") == step


class _Problem(NamedTuple):
    """One problem of a recipe: its recipe path, pydantic error type and message."""

    parts: tuple[str, ...]
    kind: str
    message: str


def _problems(error: ValidationError, data: Any) -> list[_Problem]:
    problems = []
    for item in error.errors():
        parts = tuple(_readable_location(tuple(item["loc"]), data))
        message = item["msg"]
        if item["type"] == "union_tag_invalid":
            tag = item.get("ctx", {}).get("tag")
            expected = item.get("ctx", {}).get("expected_tags")
            message = f"unknown kind {quote(tag)}; registered: {expected} (see `clue list`)"
        elif item["type"] == "union_tag_not_found":
            message = "missing `kind` (or `format`) key that selects the component"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] in _STRICT_TYPES:
            message += _what_was_given(item["type"], item.get("input"))
        problems.append(_Problem(parts, item["type"], message))
    return problems


_STRICT_TYPES = ("int_type", "float_type", "bool_type")
_YAML11_NUMBER = re.compile(
    r"^[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?)$"
)
"""A number in YAML 1.1 (PyYAML) but a string in YAML 1.2: ``1:30``, ``0b101``, ``1_0``."""


def _yaml11_only(text: str) -> bool:
    return ":" in text or "_" in text or text.lstrip("-+").startswith("0b")


def _what_was_given(kind: str, given: Any) -> str:
    """Why a strict type check failed: recipes are not coerced (``seed: true`` is no 1)."""
    if isinstance(given, bool):
        return f", not the boolean {str(given).lower()}"
    if isinstance(given, str):
        if kind != "bool_type" and _YAML11_NUMBER.match(given) and _yaml11_only(given):
            return (
                f", not the string {quote(given)}: recipe numbers follow YAML 1.2, which has "
                "no sexagesimal (1:30), binary (0b101) or underscore (1_000) numbers; "
                "write plain decimal digits"
            )
        return f", not the string {quote(given)}: write numbers and booleans without quotes"
    if kind == "int_type" and isinstance(given, float):
        if given.is_integer():
            return f", not the float {given}: write it without a decimal point"
        return ", got a number with a fractional part"
    if kind == "bool_type" and isinstance(given, int | float):
        return f", not the number {given}: write true or false"
    return ""


def _describe_problems(
    problems: list[_Problem], source: str, overrides: list[Override] | None = None
) -> str:
    """One paragraph listing every problem with its recipe path (and ``--set`` flag, if any)."""
    lines = []
    for problem in problems:
        where = ".".join(_clip(part) for part in problem.parts) or "(top level)"
        flag = _blamed_override(problem.parts, problem.kind, overrides or [])
        lines.append(f"{f'--set {_flag(flag)}: ' if flag else ''}{where}: {problem.message}")
    count = len(lines)
    head = f"Recipe {source} is invalid ({count} problem{'s' if count > 1 else ''}):"
    return head + " " + "; ".join(lines) + "." + _kind_switch_hint(problems, overrides or [])


def _kind_switch_hint(problems: list[_Problem], overrides: list[Override]) -> str:
    """Advice for ``--set SECTION.kind=NEW`` that left the old kind's fields behind."""
    for override in overrides:
        if len(override.path) < 2 or override.path[-1] != "kind":
            continue
        section = override.path[:-1]
        if any(tuple(p.parts[:-1]) == section and "Extra inputs" in p.message for p in problems):
            where = _dotted(list(section))
            kind = override.flag.partition("=")[2].strip()
            return (
                f" --set {where}.kind=... changes only the kind and keeps the fields of the "
                f"old one; replace the whole section instead, with the fields you want: "
                f"--set '{where}={{kind: {_clip(kind)}}}' (`clue show {kind}` lists its "
                "fields)."
            )
    return ""


def format_validation_error(
    error: ValidationError, data: Any, source: str, overrides: list[Override] | None = None
) -> str:
    """One paragraph listing every problem with its recipe path (and ``--set`` flag, if any)."""
    return _describe_problems(_problems(error, data), source, overrides)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Every integer in a recipe must lie in this range (seeds go to 64-bit generators)."""


def _entries(data: Any) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """``(recipe path, key, value)`` of every entry below ``data`` (and ``((), None,
    data)`` for the root). A container reached twice through YAML aliases is walked once;
    the walk is iterative, so a deep recipe cannot exhaust the stack."""
    seen: set[int] = set()
    stack: list[tuple[tuple[str, ...], Any, Any]] = [((), None, data)]
    while stack:
        parts, key, node = stack.pop()
        yield parts, key, node
        if isinstance(node, dict | list | tuple) and id(node) not in seen:
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend(((*parts, _printable(k)), k, v) for k, v in items)


def _out_of_range_integers(data: Any) -> list[_Problem]:
    """An integer anywhere in ``data`` that does not fit in 64 bits, with its recipe path."""
    problems = []
    for parts, _, node in _entries(data):
        if isinstance(node, int) and not isinstance(node, bool):
            if not INT64_MIN <= node <= INT64_MAX:
                digits = len(str(abs(node)))
                problems.append(
                    _Problem(
                        parts,
                        "int_out_of_range",
                        f"the integer ({digits} digits) does not fit in 64 bits; recipe "
                        "integers must lie in -2**63 .. 2**63 - 1",
                    )
                )
    return sorted(problems)


def _non_utf8_strings(data: Any) -> list[_Problem]:
    """A key or string anywhere in ``data`` that UTF-8 cannot encode (a lone surrogate,
    as ``--set`` or a file name can carry), with its recipe path."""
    problems = []
    for parts, key, node in _entries(data):
        if isinstance(key, str) and not _encodable(key):
            problems.append(_utf8_problem(parts, "key"))
        if isinstance(node, str) and not _encodable(node):
            problems.append(_utf8_problem(parts, "value"))
    return sorted(problems)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: Any) -> str:
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")


def _utf8_problem(parts: tuple[str, ...], what: str) -> _Problem:
    return _Problem(
        parts,
        "string_not_utf8",
        f"the {what} is not valid text: it holds a character UTF-8 cannot encode (a lone "
        "surrogate, e.g. from undecodable bytes in a command line or file name)",
    )


def _blamed_override(where: tuple[str, ...], kind: str, overrides: list[Override]) -> str | None:
    """The last ``--set`` that explains an error at ``where`` (of pydantic type ``kind``).

    An error lies inside what the override created or set, or it is reported on a section
    above the key that the override set, by a validator of that section (``heads`` must
    divide ``dim``) or as an unknown ``kind``/``format``.
    """
    for override in reversed(overrides):
        path, created = override.path, override.created
        if where[: len(created)] == created:
            return override.flag
        above = 0 < len(where) < len(path) and path[: len(where)] == where
        if above and (
            kind == "value_error"
            or (kind == "union_tag_invalid" and path[len(where) :] in (("kind",), ("format",)))
        ):
            return override.flag
    return None
