"""Specs for the contract checks, made from what a component declares.

A spec is built from its field defaults. A spec with a field that has no default
(a head's label file, say) declares example fields with a classmethod::

    @classmethod
    def contract_example(cls, data: SequenceData, root: Path) -> dict[str, Any]:
        (root / "labels.csv").write_text(...)   # files relative to the data root
        return {"labels": {"path": "labels.csv"}}

``data`` is the synthetic :class:`~clue_fw.data.dataset.SequenceData` the checks
use and ``root`` an empty folder that serves as the data root (``prepare``'s
``root``). The returned fields override the defaults. A spec with a ``dim`` field
gets ``dim = DIM`` (16) unless its example sets one, so that the checks stay fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from clue_fw.components import ComponentSpec
from clue_fw.data.dataset import SequenceData
from clue_fw.registry import ComponentEntry
from clue_fw.testing.data import DIM, sequence_data

EXAMPLE_METHOD = "contract_example"


class ContractError(Exception):
    """A component cannot even be set up for its contract checks."""


def example_fields(
    entry: ComponentEntry, data: SequenceData | None = None, root: Path | None = None
) -> dict[str, Any]:
    """The fields ``entry``'s spec declares through ``contract_example`` ({} without one)."""
    declare = getattr(entry.spec, EXAMPLE_METHOD, None)
    if declare is None:
        return {}
    if root is None:
        raise ContractError(
            f"{_name(entry)} declares {EXAMPLE_METHOD}(data, root); pass a folder as `root`."
        )
    fields = declare(data if data is not None else sequence_data(), root)
    if not isinstance(fields, Mapping):
        raise ContractError(
            f"{_name(entry)}: {entry.spec.__qualname__}.{EXAMPLE_METHOD}(data, root) returned "
            f"{type(fields).__name__}; it must return a dict of spec fields."
        )
    return dict(fields)


def example_spec(
    entry: ComponentEntry,
    data: SequenceData | None = None,
    root: Path | None = None,
    **overrides: Any,
) -> ComponentSpec:
    """``entry``'s spec from its defaults, ``dim = DIM``, its example fields and ``overrides``."""
    fields: dict[str, Any] = {}
    if "dim" in entry.spec.model_fields:
        fields["dim"] = DIM
    fields.update(example_fields(entry, data, root))
    fields.update(overrides)
    fields["kind"] = entry.kind
    try:
        return entry.spec.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'spec'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ContractError(
            f"{_name(entry)} cannot be built for its contract checks from "
            f"{_shown(fields)}: {problems}. Give every field a default, or declare example "
            f"fields with a classmethod `{EXAMPLE_METHOD}(cls, data, root) -> dict` on "
            f"{entry.spec.__qualname__} (docs/plugins.md, 'Testing a plugin')."
        ) from None


def _name(entry: ComponentEntry) -> str:
    return f"The {entry.family} {entry.kind!r} ({entry.provider})"


def _shown(fields: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in fields.items()) + "}"
