"""`clue --help` starts fast: the package root and the CLI import no torch (PEP 562)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import clue_command, clue_env

PUBLIC = [
    "BuildContext",
    "ClueError",
    "RunResult",
    "get_registry",
    "load_recipe",
    "read_file",
    "read_json_file",
    "recipe_model",
    "run",
    "validate_recipe",
    "load_run",
    "__version__",
]


def loaded_after(code: str) -> set[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code``."""
    heavy = ("torch", "pydantic", "numpy", "clue_fw.registry")
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=clue_env(), capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "code", ["import clue_fw", "import clue_fw.cli", "from clue_fw import __version__"]
)
def test_the_package_and_the_cli_import_no_torch(code: str) -> None:
    assert loaded_after(code) == set()


def test_clue_help_runs_without_torch() -> None:
    code = (
        "import sys, runpy\nsys.argv = ['clue', '--help']\ntry:\n"
        "    runpy.run_module('clue_fw.cli', run_name='__main__')\nexcept SystemExit:\n    pass"
    )
    assert "torch" not in loaded_after(code)
    done = subprocess.run(clue_command("--help"), env=clue_env(), capture_output=True, text=True)
    assert done.returncode == 0 and "run" in done.stdout and "schema" in done.stdout


def test_public_names_stay_importable() -> None:
    import clue_fw

    for name in PUBLIC:
        assert getattr(clue_fw, name) is not None, name
    assert sorted(clue_fw.__all__) == sorted(PUBLIC)
    from clue_fw import load_run, run  # noqa: F401

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        clue_fw.nope  # noqa: B018


def test_no_module_imports_the_package_root() -> None:
    """Inside the package, names come from their own modules (clue_fw._version, ...)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "clue_fw"
    pattern = re.compile(r"^\s*(import clue_fw\s*$|from clue_fw import )", re.MULTILINE)
    offenders = [
        str(path.relative_to(root.parent))
        for path in root.rglob("*.py")
        if path.name != "__init__.py" or path.parent != root
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


# ------------------------------------------------------------------ reading recipes (issue 19)
#
# Spec modules import no torch at module top (torch inside `build`), so the registry, the
# recipe model and the commands that only read recipes never import it: `clue validate`
# and `clue list` went from about 2.8 s to under 0.5 s on a 2-core machine.


@pytest.mark.parametrize(
    "code",
    [
        "import clue_fw.recipe",
        "import clue_fw.builtins",
        "from clue_fw.registry import get_registry; get_registry()",
        "from clue_fw.recipe import recipe_model; recipe_model()",
    ],
)
def test_reading_recipes_imports_no_torch(code: str) -> None:
    assert "torch" not in loaded_after(code)


RECIPE_COMMANDS = [
    ["validate", "recipes/ml30_dropout.yaml"],
    ["validate", "recipes/table2/coldrec3_clue.yaml"],
    ["validate", "recipes/table2/gender_masked_item.yaml"],
    ["list"],
    ["show", "next_item"],
    ["show", "cold_start"],
    ["schema"],
]


@pytest.mark.parametrize("args", RECIPE_COMMANDS, ids=[" ".join(a) for a in RECIPE_COMMANDS])
def test_commands_that_read_recipes_import_no_torch(args: list[str]) -> None:
    """The command runs to the end (a recipe is validated, components listed) and torch
    is never imported on the way."""
    from conftest import REPO_ROOT

    code = (
        "import sys\nimport clue_fw.cli as cli\n"
        f"try:\n    cli.app({args!r}, standalone_mode=False)\nexcept SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=clue_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("no torch"), done.stderr[-500:]


def test_every_builtin_spec_module_is_free_of_torch() -> None:
    """Each registered built-in spec lives in a module that imports no torch at its top."""
    code = (
        "import importlib, sys\nfrom clue_fw.registry import get_registry\n"
        "mods = sorted({e.spec.__module__ for e in get_registry().all_entries()})\n"
        "assert 'torch' not in sys.modules, mods\nprint(' '.join(mods))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=clue_env(), capture_output=True, text=True, check=True
    )
    assert set(done.stdout.split()) == {
        "clue_fw.augmentations.specs",
        "clue_fw.backbones.specs",
        "clue_fw.heads.specs",
        "clue_fw.objectives.specs",
    }
