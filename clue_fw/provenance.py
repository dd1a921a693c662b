"""Who wrote a component: the plugin behind a spec or a built module, and the errors
that name it.

The registry (:mod:`clue_fw.registry`) records each spec's provider when it registers
it, and hands the process registry's records here (:func:`record_providers`) whenever
it is built or replaced. Everything below the registry (the component bases, the view
pipeline, the training loop, the auxiliary terms, the stage drivers, inference) names a
plugin through this module, and so never imports the registry: the registry imports the
components, not the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from clue_fw.errors import ClueError, PluginError


@dataclass(frozen=True)
class Provenance:
    """One registered spec: its family and kind, the module of its class, its provider."""

    family: str
    kind: str
    module: str
    provider: str


#: The process registry's records, in registration order (built-ins first); empty until
#: a registry is built, as the registry itself then is.
_RECORDS: tuple[Provenance, ...] = ()


def record_providers(records: Iterable[Provenance]) -> None:
    """Replace the records (the registry calls this when the process registry changes)."""
    global _RECORDS
    _RECORDS = tuple(records)


def provider_of(family: str, kind: str) -> str | None:
    """The provider of the registered ``family`` component ``kind``, if the process
    registry knows it."""
    found = next((r for r in _RECORDS if r.family == family and r.kind == kind), None)
    return found.provider if found is not None else None


def describe_component(component: object) -> str:
    """``'MeanPoolEncoder (module my_plugin, plugin my-plugin 1.0)'``: who wrote ``component``.

    The plugin is the provider of a registered spec from the same module (or, failing
    that, the same top-level package) as the component's class; it is named only once
    the process registry has been built.
    """
    cls = component if isinstance(component, type) else type(component)
    module = cls.__module__
    text = f"{cls.__qualname__} (module {module}"
    provider = next((r.provider for r in _RECORDS if r.module == module), None)
    top = module.split(".")[0]
    provider = provider or next(
        (r.provider for r in _RECORDS if r.module.split(".")[0] == top), None
    )
    return text + (f", plugin {provider})" if provider else ")")


def is_builtin(component: object) -> bool:
    """Whether ``component`` (an object or class) is clue_fw's own code, not a plugin's."""
    cls = component if isinstance(component, type) else type(component)
    return cls.__module__.split(".")[0] == "clue_fw"


#: Exceptions that pass through :func:`plugin_call` as they are: errors that already say
#: what is wrong, interrupts, and running out of memory (the runner reports it).
_NOT_WRAPPED = (ClueError, KeyboardInterrupt, MemoryError)


@contextmanager
def plugin_call(component: object, what: str) -> Iterator[None]:
    """Attribute an exception raised inside a plugin's code to the plugin.

    ``with plugin_call(head, "metric_sums"): head.metric_sums(...)``: an exception out of
    a plugin's component (not clue_fw's own, not a ClueError, not out-of-memory) becomes
    a :class:`PluginError` that names the component, its module, its plugin and ``what``
    was called, so every command (``clue run``, ``evaluate``, ``embed``, ``analyze``,
    ``recommend``) reports it as one paragraph with exit code 2.
    """
    try:
        yield
    except _NOT_WRAPPED:
        raise
    except (Exception, SystemExit) as exc:
        if is_builtin(component) or type(exc).__name__ == "OutOfMemoryError":
            raise
        did = (
            f"called sys.exit({exc.code!r}) in {what} (a plugin must raise, not exit)"
            if isinstance(exc, SystemExit)
            else f"raised {type(exc).__name__} in {what}: {str(exc)[:500]}"
        )
        raise PluginError(
            f"{describe_component(component)} {did}. This is a bug in the plugin: report it "
            "to its authors, or "
            "leave the plugin out (CLUE_PLUGINS names the plugins to load, "
            "CLUE_DISABLE_PLUGINS=1 loads none)."
        ) from exc
