"""Security guards of docs/security.md that are not tested elsewhere.

* No code path can deserialise a pickle or run code from a string: the shipped Python
  (``clue_fw/``, ``plugins/``, ``benchmarks/``) is parsed, and imports of pickle-family
  modules, ``torch.load``, unsafe YAML loaders, ``eval``/``exec`` and friends are errors.
  Words in strings and comments (docstrings, error messages) are not code and pass.
* Entry-point plugins that are switched off or not allow-listed are never imported.

Tested elsewhere, and referenced from docs/security.md: pickle checkpoints are refused
(tests/training/test_checkpoint.py), downloads are sha256-verified and unsafe archive
members (absolute, ``..``, drive letters, symlinks) refused (tests/data/test_download.py),
and CLUE_DISABLE_PLUGINS / CLUE_PLUGINS select plugins (tests/test_registry.py).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clue_fw import registry as registry_module
from clue_fw.registry import build_registry

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("clue_fw", "plugins", "benchmarks")

# Modules whose import alone means objects can come back from bytes.
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve"}
PICKLE_MODULES |= {"marshal", "copyreg", "pandas"}  # pandas: read_pickle
# Dotted names (after resolving import aliases) that load pickles or run code.
FORBIDDEN_NAMES = {
    "torch.load",
    "torch.serialization.load",
    "torch.jit.load",
    "torch.package",
    "numpy.load",
    "yaml.load",
    "yaml.load_all",
    "yaml.full_load",
    "yaml.full_load_all",
    "yaml.unsafe_load",
    "yaml.unsafe_load_all",
    "yaml.Loader",
    "yaml.FullLoader",
    "yaml.UnsafeLoader",
    "yaml.Constructor",
    "yaml.FullConstructor",
    "yaml.UnsafeConstructor",
    "yaml.constructor.Constructor",
    "yaml.constructor.FullConstructor",
    "yaml.constructor.UnsafeConstructor",
}
BUILTINS = {"eval", "exec", "compile", "__import__", "breakpoint"}
UNSAFE_KEYWORDS = {("weights_only", False), ("allow_pickle", True)}


def python_files() -> list[Path]:
    files = []
    for top in SHIPPED:
        files += [p for p in (ROOT / top).rglob("*.py") if ".egg-info" not in str(p)]
    assert len(files) > 30
    return sorted(files)


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def violations(source: str, name: str = "<source>") -> list[str]:
    """Unsafe deserialisation or code execution in ``source``: one line per finding."""
    tree = ast.parse(source, name)
    aliases: dict[str, str] = {}  # local name -> dotted module or object
    found = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{name}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    flag(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLE_MODULES:
                flag(node, f"from {node.module} import ...")
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                if full in FORBIDDEN_NAMES:
                    flag(node, f"from {node.module} import {alias.name}")
    aliases.setdefault("np", "numpy")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node, aliases)
            if dotted is None:
                continue
            if dotted in FORBIDDEN_NAMES or any(
                dotted.startswith(f"{forbidden}.") for forbidden in FORBIDDEN_NAMES
            ):
                flag(node, dotted)
        elif isinstance(node, ast.Name) and aliases.get(node.id, "") in FORBIDDEN_NAMES:
            flag(node, f"{node.id} (= {aliases[node.id]})")
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in BUILTINS:
                flag(node, f"{node.func.id}(...)")
            for keyword in node.keywords:
                value = keyword.value
                if (
                    isinstance(value, ast.Constant)
                    and (keyword.arg, value.value) in UNSAFE_KEYWORDS
                ):
                    flag(node, f"{keyword.arg}={value.value}")
    return found


def test_shipped_code_never_unpickles_or_evaluates() -> None:
    found = [hit for path in python_files() for hit in violations(path.read_text(), str(path))]
    assert found == [], "unsafe loading or code execution:\n" + "\n".join(found)


def test_grep_hits_are_only_words_in_strings_and_comments() -> None:
    """`grep -rn "torch.load\\|pickle" clue_fw/` finds nothing but prose.

    Allowed: docstrings, comments and error messages that say clue_fw never loads
    pickles (for example in clue_fw/training/checkpoint.py, which names the formats it
    refuses). Any hit in code is an error, whatever it does.
    """
    pattern = re.compile(r"torch\.load|pickle")
    code_hits = []
    for path in python_files():
        text = path.read_text()
        prose: list[tuple[tuple[int, int], tuple[int, int]]] = [
            (token.start, token.end)
            for token in tokenize.generate_tokens(io.StringIO(text).readline)
            if token.type in (tokenize.STRING, tokenize.COMMENT)
            or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1)
        ]
        for number, line in enumerate(text.splitlines(), start=1):
            for match in pattern.finditer(line):
                position = (number, match.start())
                if not any(start <= position < end for start, end in prose):
                    code_hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert code_hits == []


@pytest.mark.parametrize(
    "source",
    [
        "import pickle",
        "import cloudpickle as cp",
        "from pickle import loads",
        "import torch\ntorch.load('x')",
        "import torch as t\nt.load('x', weights_only=True)",
        "from torch import load\nload('x')",
        "import yaml\nyaml.load(s, Loader=yaml.Loader)",
        "import yaml\nyaml.unsafe_load(s)",
        "import yaml\nyaml.load(s, Loader=yaml.FullLoader)",
        "from yaml import load",
        "import yaml\nclass L(yaml.FullLoader): pass",
        "import numpy as np\nnp.load('x.npy')",
        "eval('1 + 1')",
        "exec('x = 1')",
        "f(path, weights_only=False)",
    ],
)
def test_the_checker_catches(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize(
    "source",
    [
        "model.eval()",
        "import re\nre.compile('x')",
        "import yaml\nyaml.safe_load(s)\nyaml.safe_dump(d)",
        "import yaml\nclass L(yaml.SafeLoader): pass\nL(s).get_single_node()",
        "'''clue_fw never loads pickle files or calls torch.load'''",
        "# torch.load is not used\nx = 'a pickle file'",
        "from safetensors.torch import load_file",
    ],
)
def test_the_checker_accepts(source: str) -> None:
    assert violations(source) == []


# --------------------------------------------------------------------------- plugins


class _Plugin:
    def __init__(self, name: str, loaded: list[str], fail: bool) -> None:
        self.name, self.value, self.dist = name, f"{name}:plugin", None
        self._loaded, self._fail = loaded, fail

    def load(self) -> Any:
        self._loaded.append(self.name)  # importing a plugin runs its code
        if self._fail:
            raise ImportError(f"{self.name} must not be imported")
        return SimpleNamespace()


@pytest.mark.parametrize(
    ("env", "imported"),
    [
        ({"CLUE_DISABLE_PLUGINS": "1"}, []),
        ({"CLUE_PLUGINS": "good"}, ["good"]),
        ({"CLUE_PLUGINS": "good", "CLUE_DISABLE_PLUGINS": "1"}, []),
    ],
)
def test_plugins_switched_off_are_never_imported(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], imported: list[str]
) -> None:
    loaded: list[str] = []
    points = [_Plugin("good", loaded, fail=False), _Plugin("evil", loaded, fail=True)]
    monkeypatch.setattr(
        registry_module.metadata,
        "entry_points",
        lambda group: list(points) if group == "clue_fw" else [],
    )
    monkeypatch.delenv("CLUE_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("CLUE_PLUGINS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    build_registry()
    assert loaded == imported
