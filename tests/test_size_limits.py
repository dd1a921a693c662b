"""A house a newcomer can read in an hour (issue 19): no module of clue_fw over
MAX_MODULE_LINES lines, no function or method whose body spans more than
MAX_FUNCTION_LINES lines (its ast body, docstring included, from first to last line).

The ones that still exceed are listed below with their size today; the list may only
shrink: a listed one that grows fails, one that comes under the limit must leave the
list, and a new one over the limit fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clue_fw"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

#: Modules still over the limit -> their line count today (to split along their seams).
OVERSIZED_MODULES: dict[str, int] = {}
#: Functions still over the limit ("module.py:qualified name") -> their body span today.
LONG_FUNCTIONS: dict[str, int] = {}


def module_sizes() -> dict[str, int]:
    return {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def function_spans() -> dict[str, int]:
    spans = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, qualname in _functions(tree, ""):
            span = node.end_lineno - node.body[0].lineno + 1  # type: ignore[operator]
            spans[f"{path.relative_to(PACKAGE)}:{qualname}"] = span
    return spans


def _functions(node: ast.AST, prefix: str) -> list[tuple[ast.AST, str]]:
    found: list[tuple[ast.AST, str]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                found.append((child, name))
            found += _functions(child, name + ".")
        else:
            found += _functions(child, prefix)
    return found


def _over(sizes: dict[str, int], limit: int, known: dict[str, int]) -> list[str]:
    problems = []
    for name, size in sorted(sizes.items()):
        allowed = known.get(name, limit)
        if size > allowed:
            problems.append(f"{name}: {size} lines (at most {allowed})")
    for name in sorted(known):
        if sizes.get(name, 0) <= limit:
            problems.append(f"{name} is within {limit} lines now: remove it from the list")
    return problems


def test_no_module_over_the_limit() -> None:
    assert _over(module_sizes(), MAX_MODULE_LINES, OVERSIZED_MODULES) == []


def test_no_function_over_the_limit() -> None:
    assert _over(function_spans(), MAX_FUNCTION_LINES, LONG_FUNCTIONS) == []


def test_the_walk_measures_bodies() -> None:
    source = "def f():\n    '''doc'''\n" + "    x = 1\n" * 90
    (node, name), *_ = _functions(ast.parse(source), "")
    assert name == "f" and node.end_lineno - node.body[0].lineno + 1 == 91  # type: ignore[attr-defined]
