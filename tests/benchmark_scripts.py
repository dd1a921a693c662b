"""Import a script of benchmarks/ as a module, for the tests of its logic.

The scripts import each other by name (``from pool import ...``), as they do when run
from the repository root, so benchmarks/ goes on ``sys.path`` once.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as the module ``name`` (imported once)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)
