"""Component registries, filled through pluggy hooks.

The registry is built once per process by :func:`get_registry`: the built-in
plugin (``clue_fw.builtins``) registers first, then every entry point in the
``clue_fw`` group. Environment variables control entry-point loading:

* ``CLUE_DISABLE_PLUGINS=1``: load no entry-point plugins (tests use this);
* ``CLUE_PLUGINS=a,b``: load only the entry points named ``a`` and ``b`` (a name that no
  installed entry point has is an error).

Whatever goes wrong in a plugin is a :class:`~clue_fw.errors.RegistryError` that names
the plugin and the rule it broke: an import that fails, a hook implementation that
pluggy's validation refuses (wrong argument names, a misspelt hook name), a hook that
raises or returns something other than a list of spec classes, two plugins that
register the same kind, and two installed distributions that use the same entry-point
name. The registry records each spec's provider as it registers it
(:class:`ComponentEntry`) and hands the process registry's records to
:mod:`clue_fw.provenance`, where the layers below read them: at run time
``provenance.describe_component`` names the plugin behind a component that breaks its
contract (:class:`~clue_fw.errors.PluginError`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

import clue_fw.hookspecs as hookspecs
from clue_fw._deprecated import moved_names
from clue_fw.errors import RegistryError, quote
from clue_fw.provenance import Provenance, record_providers
from clue_fw.specs import FAMILIES, ComponentSpec

DISABLE_ENV = "CLUE_DISABLE_PLUGINS"
ALLOW_ENV = "CLUE_PLUGINS"
ENTRY_POINT_GROUP = "clue_fw"

_HOOK_BY_FAMILY = {
    "backbone": "clue_register_backbones",
    "augmentation": "clue_register_augmentations",
    "objective": "clue_register_objectives",
    "head": "clue_register_heads",
}


@dataclass(frozen=True)
class ComponentEntry:
    """One registered component: its spec class and who provided it."""

    family: str
    kind: str
    spec: type[ComponentSpec]
    provider: str

    @property
    def description(self) -> str:
        return self.spec.summary()


@dataclass
class Registry:
    """All registered components, by family and kind."""

    entries: dict[str, dict[str, ComponentEntry]] = field(
        default_factory=lambda: {family: {} for family in FAMILIES}
    )

    def add(self, family: str, spec: type[ComponentSpec], provider: str) -> None:
        if family not in self.entries:
            raise RegistryError(f"Unknown component family {family!r}; expected one of {FAMILIES}.")
        if not (isinstance(spec, type) and issubclass(spec, ComponentSpec)):
            raise RegistryError(
                f"Plugin {provider} registered {spec!r} as a {family}, which is not a "
                "ComponentSpec subclass. Hooks must return spec classes."
            )
        if spec.family != family:
            raise RegistryError(
                f"Plugin {provider} registered {spec.__qualname__} (a {spec.family or 'spec'} "
                f"spec) through the {family} hook. Register it through "
                f"{_HOOK_BY_FAMILY.get(spec.family, 'the matching hook')}."
            )
        try:
            kind = spec.kind_name()
        except TypeError as exc:
            raise RegistryError(f"Plugin {provider}: {exc}") from None
        existing = self.entries[family].get(kind)
        if existing is not None:
            raise RegistryError(
                f"Two plugins register a {family} named {kind!r}: {existing.provider} "
                f"({existing.spec.__module__}.{existing.spec.__qualname__}) and {provider} "
                f"({spec.__module__}.{spec.__qualname__}). Uninstall one, or allow-list "
                f"plugins with {ALLOW_ENV}=name1,name2."
            )
        self.entries[family][kind] = ComponentEntry(family, kind, spec, provider)

    def specs(self, family: str) -> list[type[ComponentSpec]]:
        return [entry.spec for entry in self.entries[family].values()]

    def get(self, family: str, kind: str) -> ComponentEntry:
        try:
            return self.entries[family][kind]
        except KeyError:
            known = ", ".join(sorted(self.entries.get(family, {}))) or "none"
            raise RegistryError(
                f"No {family} named {kind!r} is registered (known: {known}). "
                "Run `clue list` to see every component and the plugin providing it."
            ) from None

    def all_entries(self) -> Iterable[ComponentEntry]:
        for family in FAMILIES:
            yield from self.entries[family].values()


def make_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def _builtin_provider() -> str:
    from clue_fw._version import __version__

    return f"clue_fw {__version__} (built-in)"


def _entry_point_plugins() -> list[tuple[str, Any, str]]:
    """Load the entry points allowed by the environment: (name, plugin, provider)."""
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0", "false", "False"):
        return []
    allow = os.environ.get(ALLOW_ENV)
    allowed = {name.strip() for name in allow.split(",") if name.strip()} if allow else None
    installed = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    if allowed:
        _check_allowed(allowed, installed)
    chosen = [
        entry_point for entry_point in installed if not allowed or entry_point.name in allowed
    ]
    loaded = []
    for entry_point in _unique_names(chosen):
        provider = _provider(entry_point)
        try:
            plugin = entry_point.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not look like a bug
            raise RegistryError(
                f"Plugin {entry_point.name!r} ({provider}, entry point {entry_point.value}) "
                f"failed to import: it {_raised(exc)}. Fix or uninstall it, or set "
                f"{DISABLE_ENV}=1 to skip entry-point plugins."
            ) from exc
        loaded.append((entry_point.name, plugin, provider))
    return loaded


def _check_allowed(allowed: set[str], installed: list[Any]) -> None:
    """Refuse a ``CLUE_PLUGINS`` name that no installed entry point has (it would load
    nothing, silently), listing the entry-point names there are."""
    names = {entry_point.name for entry_point in installed}
    unknown = sorted(allowed - names)
    if not unknown:
        return
    hints = []
    for name in unknown:
        meant = sorted(
            ep.name
            for ep in installed
            if ep.dist is not None and _normal(ep.dist.name) == _normal(name)
        )
        if meant:
            hints.append(
                f"{quote(name)} is a distribution; its entry point is named "
                + " or ".join(repr(m) for m in meant)
            )
    available = ", ".join(repr(n) for n in sorted(names)) or "none are installed"
    raise RegistryError(
        f"{ALLOW_ENV} names {', '.join(quote(n) for n in unknown)}, which no installed "
        f"plugin provides as a {ENTRY_POINT_GROUP!r} entry point"
        + (f" ({'; '.join(hints)})" if hints else "")
        + f". Entry-point names: {available}. {ALLOW_ENV} takes entry-point names (the left "
        f"side of [project.entry-points.{ENTRY_POINT_GROUP}] in a plugin's pyproject.toml), "
        "separated by commas."
    )


def _normal(name: str) -> str:
    """A distribution name in normal form (PEP 503): ``Clue_Mean.Pool`` -> ``clue-mean-pool``."""
    return "-".join(name.lower().replace("_", "-").replace(".", "-").split("-"))


def _provider(entry_point: Any) -> str:
    dist = entry_point.dist
    return f"{dist.name} {dist.version}" if dist is not None else entry_point.name


def _unique_names(entry_points: list[Any]) -> list[Any]:
    """The entry points, refusing two distributions that use the same entry-point name.

    The same entry point seen twice (one distribution found on two paths) counts once.
    """
    by_name: dict[str, Any] = {}
    unique = []
    for entry_point in entry_points:
        first = by_name.get(entry_point.name)
        if first is None:
            by_name[entry_point.name] = entry_point
            unique.append(entry_point)
        elif (_provider(first), first.value) != (_provider(entry_point), entry_point.value):
            raise RegistryError(
                f"Two installed distributions use the clue_fw entry-point name "
                f"{entry_point.name!r}: {_provider(first)} ({first.value}) and "
                f"{_provider(entry_point)} ({entry_point.value}). clue_fw cannot tell which "
                f"one {ENTRY_POINT_GROUP}:{entry_point.name} means; uninstall one of them, or "
                f"set {DISABLE_ENV}=1 to skip entry-point plugins."
            )
    return unique


def _register(manager: pluggy.PluginManager, plugin: Any, name: str, provider: str) -> None:
    """Register one plugin; pluggy's validation failures name the plugin."""
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise RegistryError(
            f"Plugin {provider} has a hook implementation that pluggy refuses: {exc}. Every "
            "@hookimpl must match its hook in clue_fw.hookspecs (name and arguments). Fix or "
            f"uninstall it, or set {DISABLE_ENV}=1 to skip entry-point plugins."
        ) from None
    except ValueError as exc:  # pluggy: the same plugin or name registered twice
        raise RegistryError(f"Plugin {provider} cannot be registered: {exc}.") from None


def _call_hook(function: Any, hook_name: str, provider: str) -> Any:
    """Call one plugin's hook implementation; whatever it raises names the plugin."""
    try:
        return function()
    except (Exception, SystemExit) as exc:  # plugin code: attribute the failure to its plugin
        raise RegistryError(
            f"Plugin {provider}: its hook {hook_name} {_raised(exc)}. Fix or uninstall it, or "
            f"set {DISABLE_ENV}=1 to skip entry-point plugins."
        ) from exc


def _raised(exc: BaseException) -> str:
    """``raised ValueError: ...``, or ``called sys.exit(3)``: what plugin code did."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) (a plugin must raise an exception, not exit)"
    return f"raised {type(exc).__name__}: {str(exc)[:300]}"


def build_registry(extra_plugins: Iterable[tuple[ModuleType | object, str]] = ()) -> Registry:
    """Build a registry from the built-ins, entry points and ``extra_plugins``.

    ``extra_plugins`` are ``(plugin, provider)`` pairs, for library users and tests
    that register a plugin object in code instead of installing a package.
    """
    import clue_fw.builtins as builtins

    manager = make_plugin_manager()
    providers: dict[str, str] = {}
    plugins: list[tuple[str, Any, str]] = [("clue_fw.builtins", builtins, _builtin_provider())]
    plugins += _entry_point_plugins()
    plugins += [
        (f"extra:{i}:{provider}", p, provider) for i, (p, provider) in enumerate(extra_plugins)
    ]
    for name, plugin, provider in plugins:
        if manager.is_registered(plugin):
            continue
        _register(manager, plugin, name, provider)
        providers[name] = provider
    try:
        manager.check_pending()  # a @hookimpl whose name is no hook (a misspelling)
    except pluggy.PluginValidationError as exc:
        name = manager.get_name(exc.plugin) or repr(exc.plugin)
        raise RegistryError(
            f"Plugin {providers.get(name, name)} has a hook implementation that pluggy "
            f"refuses: {exc}. The hooks are {', '.join(_HOOK_BY_FAMILY.values())}."
        ) from None

    registry = Registry()
    for family, hook_name in _HOOK_BY_FAMILY.items():
        hook = getattr(manager.hook, hook_name)
        # Call implementations one by one so each spec is attributed to its provider;
        # get_hookimpls() lists implementations in registration order (built-ins first).
        for impl in hook.get_hookimpls():
            provider = providers.get(impl.plugin_name, impl.plugin_name)
            result = _call_hook(impl.function, hook_name, provider)
            if result is None:
                continue
            if not isinstance(result, (list, tuple)):
                raise RegistryError(
                    f"Plugin {provider}: {hook_name} must return a list of spec classes, "
                    f"got {type(result).__name__}."
                )
            for spec in result:
                registry.add(family, spec, provider)
    return registry


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
        _publish(_REGISTRY)
    return _REGISTRY


def _publish(registry: Registry | None) -> None:
    """Hand the process registry's provider records to :mod:`clue_fw.provenance`, where
    the layers below the registry read them."""
    entries = registry.all_entries() if registry is not None else ()
    record_providers(Provenance(e.family, e.kind, e.spec.__module__, e.provider) for e in entries)


# Moved below the registry (components, views, the loop and inference name plugins
# without importing it).
__getattr__ = moved_names(
    __name__,
    {
        name: "clue_fw.provenance"
        for name in ("provider_of", "describe_component", "is_builtin", "plugin_call")
    },
)


_ON_RESET: list[Callable[[], None]] = []


def on_registry_reset(callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever :func:`reset_registry` runs: modules that cache what
    they built from the registry (the recipe models) drop it. The registry thereby
    imports none of them (no ``recipe`` <-> ``registry`` import cycle)."""
    if callback not in _ON_RESET:
        _ON_RESET.append(callback)


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or drop, to rebuild lazily) the process-wide registry."""
    global _REGISTRY
    _REGISTRY = registry
    _publish(registry)
    for callback in _ON_RESET:
        callback()
