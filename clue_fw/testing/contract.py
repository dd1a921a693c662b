"""``contract_test``: the contract checks of a plugin's components as one pytest test."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

from clue_fw.registry import ComponentEntry, Registry
from clue_fw.testing._require import require
from clue_fw.testing.cases import ContractCase, check_names, contract_cases
from clue_fw.testing.registries import plugin_components


def contract_test(
    plugin: ModuleType | str | None = None,
    *,
    registry: Registry | None = None,
    select: Callable[[ComponentEntry], bool] | None = None,
    skip: Mapping[str, str] | None = None,
) -> Callable[[ContractCase, Path], None]:
    """A pytest test function, parametrised over every contract case of a plugin.

    Assign it to a ``test_`` name in a test module and pytest collects it::

        import my_plugin
        from clue_fw.testing import contract_test

        test_contract = contract_test(my_plugin)

    ``plugin``: the plugin module (tested without installing it), or the name of an
    installed distribution (tested through its ``clue_fw`` entry points; ``"clue_fw"``
    names the built-ins). The registry then holds the built-ins and that plugin only.
    ``registry`` (instead of ``plugin``): test every component of this registry, or
    those ``select`` keeps. ``skip`` maps a check name (``"backbone_causal"``; see
    :func:`~clue_fw.testing.cases.check_names`) to the reason the plugin's components
    do not meet it; those cases are reported as skipped, with the reason.

    Test ids read ``test_contract[backbone-mean_pool-shapes]`` and
    ``test_contract[objective-clue-on-mean_pool-trains]``.
    """
    pytest = require("pytest")
    if plugin is not None and registry is not None:
        raise TypeError("contract_test takes a plugin or a registry, not both.")
    if plugin is not None:
        registry, chosen = plugin_components(plugin)
    elif registry is not None:
        chosen = list(registry.all_entries())
    else:
        raise TypeError(
            "contract_test needs the plugin to test: its module, `contract_test(my_plugin)`, "
            'or its installed distribution name, `contract_test("my-plugin")`.'
        )
    if select is not None:
        chosen = [entry for entry in chosen if select(entry)]
    skip = dict(skip or {})
    unknown = sorted(set(skip) - set(check_names()))
    if unknown:
        raise ValueError(
            f"contract_test(skip=...) names unknown checks {unknown}; the checks are "
            f"{', '.join(check_names())}."
        )
    params = [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.skip(reason=skip[case.name])] if case.name in skip else [],
        )
        for case in contract_cases(registry, chosen)
    ]

    @pytest.mark.parametrize("contract_case", params)
    def test_contract(contract_case: ContractCase, tmp_path: Path) -> None:
        """One clue_fw contract check of one component (clue_fw.testing)."""
        contract_case.run(tmp_path)

    return test_contract
