"""Contract tests for clue_fw components: the checks every backbone, view, objective
and head must pass, for plugin packages and for clue_fw's own built-ins alike.

One line in a plugin's test suite runs them on every component the plugin
registers (its module, so no installation is needed)::

    # tests/test_my_plugin.py
    import my_plugin
    from clue_fw.testing import contract_test

    test_contract = contract_test(my_plugin)

or, through the installed entry points, ``contract_test("my-plugin")``. The checks:
smoke build, forward shapes, padding and causality (backbones), Hypothesis
properties (views), a training step on every registered backbone (objectives,
heads), seeding and a safetensors round trip of the module state (all). Specs are
built from their defaults; a spec with a field that has no default declares example
fields (:mod:`clue_fw.testing.specs`). ``docs/plugins.md`` ("Testing a plugin")
describes each check.

``pytest`` and ``hypothesis`` are needed only when the checks run
(``pip install 'clue_fw[testing]'``).
"""

from __future__ import annotations

from clue_fw.testing.cases import ContractCase, check_names, contract_cases
from clue_fw.testing.contract import contract_test
from clue_fw.testing.data import CONTEXT, ITEMS, left_pad, sequence_data
from clue_fw.testing.registries import installed_registry, is_builtin, plugin_components
from clue_fw.testing.specs import EXAMPLE_METHOD, ContractError, example_spec

__all__ = [
    "CONTEXT",
    "EXAMPLE_METHOD",
    "ITEMS",
    "ContractCase",
    "ContractError",
    "check_names",
    "contract_cases",
    "contract_test",
    "example_spec",
    "installed_registry",
    "is_builtin",
    "left_pad",
    "plugin_components",
    "sequence_data",
]
