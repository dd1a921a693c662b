"""Hook specifications: the only way components enter clue_fw.

Built-in components register through these hooks exactly as a third-party plugin
package does. A plugin is a module with one or more ``@hookimpl`` functions,
exposed through the ``clue_fw`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points.clue_fw]
    my_plugin = "my_plugin"

Each hook returns a list of component spec classes (pydantic models whose
``kind`` field names the component). A hook implementation takes no arguments and
must be named exactly as below: pluggy's validation (wrong arguments, an unknown
``clue_...`` name) and any exception a hook raises become a
:class:`~clue_fw.errors.RegistryError` that names the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from clue_fw.components import (
        AugmentationSpec,
        BackboneSpec,
        HeadSpec,
        ObjectiveSpec,
    )

PROJECT_NAME = "clue_fw"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def clue_register_backbones() -> list[type[BackboneSpec]]:
    """Return sequence-encoder specs (family ``backbone``).

    A backbone turns a left-padded item batch ``[B, n]`` into per-position states
    ``[B, n, d]`` and a user vector ``[B, d]``.
    """


@hookspec
def clue_register_augmentations() -> list[type[AugmentationSpec]]:
    """Return view specs (family ``augmentation``) used by contrastive objectives.

    A view maps an item batch ``[B, n]`` and a ``torch.Generator`` to a batch of
    the same shape and dtype.
    """


@hookspec
def clue_register_objectives() -> list[type[ObjectiveSpec]]:
    """Return pre-training objective specs (family ``objective``)."""


@hookspec
def clue_register_heads() -> list[type[HeadSpec]]:
    """Return downstream head specs (family ``head``): a loss and metrics for one task."""
