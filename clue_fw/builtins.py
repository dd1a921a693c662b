"""The built-in plugin: registers clue_fw's own components through the public hooks."""

from __future__ import annotations

from clue_fw.augmentations.specs import (
    CropViewSpec,
    DropoutViewSpec,
    MaskViewSpec,
    PermuteViewSpec,
    SplitViewSpec,
)
from clue_fw.backbones.specs import (
    CaserSpec,
    DeepFMSpec,
    GRUSpec,
    ItemMeanSpec,
    NextItNetSpec,
    NFMSpec,
    TransformerSpec,
)
from clue_fw.heads.specs import ColdStartSpec, NextItemSpec, ProfileSpec
from clue_fw.hookspecs import hookimpl
from clue_fw.objectives.specs import ClueSpec, InfoNceSpec, MaskedItemSpec, NoPretrainingSpec
from clue_fw.specs import AugmentationSpec, BackboneSpec, HeadSpec, ObjectiveSpec


@hookimpl
def clue_register_backbones() -> list[type[BackboneSpec]]:
    return [
        TransformerSpec,
        GRUSpec,
        NextItNetSpec,
        CaserSpec,
        DeepFMSpec,
        NFMSpec,
        ItemMeanSpec,
    ]


@hookimpl
def clue_register_augmentations() -> list[type[AugmentationSpec]]:
    return [DropoutViewSpec, MaskViewSpec, CropViewSpec, PermuteViewSpec, SplitViewSpec]


@hookimpl
def clue_register_objectives() -> list[type[ObjectiveSpec]]:
    return [ClueSpec, InfoNceSpec, MaskedItemSpec, NoPretrainingSpec]


@hookimpl
def clue_register_heads() -> list[type[HeadSpec]]:
    return [NextItemSpec, ProfileSpec, ColdStartSpec]
