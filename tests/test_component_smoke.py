"""Contract tests over EVERY built-in component (timm style), through clue_fw.testing.

The built-ins meet exactly the checks a plugin package runs with its one line
``test_contract = contract_test(my_plugin)``: backbones (shapes, padding, gradients,
causality, safetensors round trip, seeding, left-padding invariance), views
(Hypothesis properties), trainable objectives and heads on every backbone, and the
state round trip of objectives and heads. Installed plugins meet them in
``tests/test_installed_plugins.py``.
"""

from __future__ import annotations

from clue_fw import builtins
from clue_fw.testing import contract_test, plugin_components

test_builtin_contract = contract_test(builtins)


def test_every_family_has_builtin_components() -> None:
    _, entries = plugin_components(builtins)
    kinds = {(entry.family, entry.kind) for entry in entries}
    assert ("backbone", "transformer") in kinds
    assert {family for family, _ in kinds} == {"backbone", "augmentation", "objective", "head"}
