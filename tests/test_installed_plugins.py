"""Every installed entry-point plugin meets the contract the built-ins meet.

The rest of the suite is hermetic (``CLUE_DISABLE_PLUGINS=1``, tests/conftest.py), so
installed plugins never meet it. Here the registry loads every installed ``clue_fw``
entry point whatever the environment says, and clue_fw.testing runs the contract on
each component that is not a built-in, and on its pairs with every registered
backbone, objective and head (built-in or plugin). With no plugin installed the test
reports an empty parameter set as skipped.
"""

from __future__ import annotations

from clue_fw.testing import contract_test, installed_registry, is_builtin

REGISTRY = installed_registry()

test_installed_plugin_contract = contract_test(
    registry=REGISTRY, select=lambda entry: not is_builtin(entry)
)


def test_the_registry_holds_the_builtins_too() -> None:
    assert "transformer" in REGISTRY.entries["backbone"]
