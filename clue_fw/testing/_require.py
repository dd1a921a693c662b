"""Import the test tools clue_fw.testing needs only when a check actually runs.

``pytest`` and ``hypothesis`` are test dependencies (the ``testing`` and ``dev``
extras), not run-time ones: ``import clue_fw.testing`` works without them, and the
first use that needs one says how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = "pip install 'clue_fw[testing]'"


def require(module: str) -> ModuleType:
    """Import ``module`` (``pytest`` or ``hypothesis``) or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"clue_fw.testing needs {module!r} to run the component contract tests, and it is "
            f"not installed ({exc}). Install the test extra: `{INSTALL_HINT}` (or "
            "`pip install 'clue_fw[dev]'` in a clue_fw checkout)."
        ) from exc
