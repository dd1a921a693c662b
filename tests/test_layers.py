"""Nothing below reaches up (issue 19, move 5).

The layers of ``clue_fw`` are listed here, lowest first. A module may import (at module
top or inside a function) from its own layer and the layers below it; an import from a
lower layer into the registry, the memory guard, the runner, analysis or the CLI fails
this test, naming the file and line. A lower layer that needs what such a module knows
gets it handed down: the plugin behind a component from :mod:`clue_fw.provenance`
(recorded by the registry), the memory accounting from :mod:`clue_fw.memory`, the device
from :mod:`clue_fw.devices`, the files from :mod:`clue_fw.file_safety`.

Every module of the package must belong to a layer, so a new module is placed on
purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "clue_fw"

#: Lowest first. A name stands for the module and everything under it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "clue_fw._version",
            "clue_fw._deprecated",
            "clue_fw.errors",
            "clue_fw.provenance",
            "clue_fw.file_safety",
            "clue_fw.output_target",  # a deprecated alias of file_safety
            "clue_fw.memory",
            "clue_fw.spec_dumps",  # leaving later-added fields out of recipe dumps
            "clue_fw.running.layout",  # plain names and paths of a run directory
        ),
    ),
    (
        "components",
        (
            "clue_fw.specs",
            "clue_fw.components",
            "clue_fw.hookspecs",
            "clue_fw.item_softmax",
            "clue_fw.item_softmax_options",
            "clue_fw.metrics",
            "clue_fw.data",
            "clue_fw.augmentations",
            "clue_fw.backbones",
            "clue_fw.objectives",
            "clue_fw.heads",
            "clue_fw.distributed",
            "clue_fw.devices",
            "clue_fw.training",
        ),
    ),
    ("registry", ("clue_fw.registry", "clue_fw.builtins", "clue_fw.recipe", "clue_fw.reference")),
    ("memory guard", ("clue_fw.resources",)),
    (
        "runs and inference",
        ("clue_fw.running", "clue_fw.inference", "clue_fw.baselines", "clue_fw.probing"),
    ),
    ("runner", ("clue_fw.runner",)),
    ("analysis", ("clue_fw.analysis",)),
    (
        "interfaces",
        (
            "clue_fw.cli",
            "clue_fw.cli_analysis",
            "clue_fw.cli_data",
            "clue_fw.cli_evaluate",
            "clue_fw.cli_export",
            "clue_fw.cli_probe",
            "clue_fw.cli_processes",
            "clue_fw.testing",
            "clue_fw.__main__",
            "clue_fw",  # the package's lazy public names
        ),
    ),
]
#: What no lower layer may import.
GUARDED = (
    "clue_fw.registry",
    "clue_fw.builtins",
    "clue_fw.resources",
    "clue_fw.runner",
    "clue_fw.analysis",
    "clue_fw.cli",
    "clue_fw.cli_analysis",
    "clue_fw.cli_data",
    "clue_fw.cli_evaluate",
    "clue_fw.cli_export",
    "clue_fw.cli_probe",
    "clue_fw.cli_processes",
)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """The index of the layer whose most specific name holds ``module``."""
    found = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if _within(module, prefix)
    ]
    return max(found)[1] if found else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every ``clue_fw`` module ``path`` imports, anywhere in it, with the line."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from clue_fw import memory` imports a module
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in MODULES else base, node.lineno))
    return [(name, line) for name, line in found if _within(name, "clue_fw")]


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) is None] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_nothing_below_reaches_up(module: str) -> None:
    mine = layer_of(module)
    assert mine is not None
    upward = [
        f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {name} "
        f"({LAYERS[mine][0]} -> {LAYERS[theirs][0]})"
        for name, line in imports(module, MODULES[module])
        if any(_within(name, guarded) for guarded in GUARDED)
        and (theirs := layer_of(name)) is not None
        and theirs > mine
    ]
    assert upward == []


def test_the_walk_sees_imports_inside_functions() -> None:
    """The registry import that components.py used to make inside ``__call__`` would be
    found: the walk reads every import node, not only the module's top."""
    source = "def f():\n    from clue_fw.registry import plugin_call\n"
    probe = PACKAGE.parent / "tests" / "_layers_probe.py"
    try:
        probe.write_text(source)
        assert imports("clue_fw.components", probe) == [("clue_fw.registry", 2)]
    finally:
        probe.unlink()


def test_the_cli_writes_files_without_the_training_package() -> None:
    """The CLI writes its JSON and text through file_safety, not training.checkpoint."""
    cli = [m for m in MODULES if _within(m, "clue_fw.cli") or m.startswith("clue_fw.cli_")]
    reached = [
        (m, name, line)
        for m in cli
        for name, line in imports(m, MODULES[m])
        if _within(name, "clue_fw.training")
    ]
    assert reached == []
