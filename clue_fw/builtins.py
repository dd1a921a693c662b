"""The built-in plugin: registers clue_fw's own components through the public hooks."""

from __future__ import annotations

from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import AugmentationSpec, BackboneSpec, HeadSpec, ObjectiveSpec
from clue_fw.heads.next_item import NextItemSpec
from clue_fw.hookspecs import hookimpl
from clue_fw.objectives.clue import ClueSpec
from clue_fw.objectives.none import NoPretrainingSpec


@hookimpl
def clue_register_backbones() -> list[type[BackboneSpec]]:
    return [TransformerSpec]


@hookimpl
def clue_register_augmentations() -> list[type[AugmentationSpec]]:
    return [DropoutViewSpec]


@hookimpl
def clue_register_objectives() -> list[type[ObjectiveSpec]]:
    return [ClueSpec, NoPretrainingSpec]


@hookimpl
def clue_register_heads() -> list[type[HeadSpec]]:
    return [NextItemSpec]
