"""The registry a contract test runs on, and the components it tests there.

A plugin is named by its module (tested without installing it) or by its
distribution (tested through its installed ``clue_fw`` entry points). Either way
the registry holds the built-ins plus that plugin only, whatever
``CLUE_DISABLE_PLUGINS`` and ``CLUE_PLUGINS`` say, so that other installed plugins
neither take part nor break the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from types import ModuleType

from clue_fw.registry import (
    ALLOW_ENV,
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    ComponentEntry,
    Registry,
    build_registry,
)
from clue_fw.testing.specs import ContractError

BUILTIN_DISTRIBUTION = "clue_fw"


def is_builtin(entry: ComponentEntry) -> bool:
    """Whether clue_fw itself provides ``entry`` (through ``clue_fw.builtins``)."""
    import clue_fw.builtins as builtins

    hooks = ("backbones", "augmentations", "objectives", "heads")
    return any(entry.spec in getattr(builtins, f"clue_register_{hook}")() for hook in hooks)


def plugin_components(plugin: ModuleType | str) -> tuple[Registry, list[ComponentEntry]]:
    """The registry with the built-ins and ``plugin``, and the components ``plugin`` adds.

    ``plugin``: a plugin module (the one with the ``@hookimpl`` functions), or the name of
    an installed distribution whose ``clue_fw`` entry points to load; ``"clue_fw"`` names
    the built-ins.
    """
    if isinstance(plugin, ModuleType):
        import clue_fw.builtins as builtins

        if plugin is builtins:
            return _builtin_components()
        label = f"{plugin.__name__} (module under test)"
        with _entry_points(None):
            registry = build_registry(extra_plugins=[(plugin, label)])
        chosen = [e for e in registry.all_entries() if e.provider == label]
        return registry, _nonempty(chosen, f"module {plugin.__name__}")
    if not isinstance(plugin, str):
        raise TypeError(
            f"contract_test takes a plugin module or an installed distribution name, got "
            f"{type(plugin).__name__}."
        )
    if _normal(plugin) == _normal(BUILTIN_DISTRIBUTION):
        return _builtin_components()
    names = _entry_point_names(plugin)
    with _entry_points(names):
        registry = build_registry()
    chosen = [e for e in registry.all_entries() if _distribution(e.provider) == _normal(plugin)]
    return registry, _nonempty(chosen, f"distribution {plugin!r}")


def installed_registry() -> Registry:
    """The registry with the built-ins and every installed entry-point plugin.

    It ignores ``CLUE_DISABLE_PLUGINS`` and ``CLUE_PLUGINS``: a hermetic test suite can
    still run the contract over every plugin installed next to clue_fw.
    """
    installed = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    with _entry_points(installed):
        return build_registry()


def _builtin_components() -> tuple[Registry, list[ComponentEntry]]:
    with _entry_points(None):
        registry = build_registry()
    return registry, [e for e in registry.all_entries() if is_builtin(e)]


@contextmanager
def _entry_points(allowed: set[str] | None) -> Iterator[None]:
    """Load exactly the entry points named ``allowed`` (None or empty: none) meanwhile."""
    saved = {name: os.environ.get(name) for name in (DISABLE_ENV, ALLOW_ENV)}
    os.environ.pop(DISABLE_ENV, None)
    os.environ.pop(ALLOW_ENV, None)
    if allowed:
        os.environ[ALLOW_ENV] = ",".join(sorted(allowed))
    else:
        os.environ[DISABLE_ENV] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _entry_point_names(distribution: str) -> set[str]:
    try:
        found = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ContractError(
            f"No installed distribution is named {distribution!r}. Install the plugin "
            "(`pip install -e .` in its folder), or pass its module instead: "
            "`contract_test(my_plugin)`."
        ) from None
    names = {ep.name for ep in found.entry_points if ep.group == ENTRY_POINT_GROUP}
    if not names:
        raise ContractError(
            f"The distribution {distribution!r} declares no {ENTRY_POINT_GROUP!r} entry point, "
            f"so clue_fw never loads it. Add `[project.entry-points.{ENTRY_POINT_GROUP}]` "
            '`my_plugin = "my_plugin"` to its pyproject.toml and reinstall it.'
        )
    return names


def _nonempty(chosen: list[ComponentEntry], what: str) -> list[ComponentEntry]:
    if not chosen:
        raise ContractError(
            f"The {what} registers no component: none of its clue_register_* hooks returned a "
            "spec class. Check its @hookimpl functions (docs/plugins.md)."
        )
    return chosen


def _distribution(provider: str) -> str:
    """``'clue-mean-pool 0.1.0'`` -> ``'clue-mean-pool'`` (normal form)."""
    return _normal(provider.split(" ", 1)[0])


def _normal(name: str) -> str:
    """A distribution name in normal form (PEP 503)."""
    return "-".join(name.lower().replace("_", "-").replace(".", "-").split("-"))
