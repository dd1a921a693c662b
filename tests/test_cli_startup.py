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
