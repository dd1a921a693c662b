"""The built-in plugin: registers clue_fw's own components through the public hooks."""

from __future__ import annotations

from clue_fw.augmentations.crop import CropViewSpec
from clue_fw.augmentations.dropout import DropoutViewSpec
from clue_fw.augmentations.mask import MaskViewSpec
from clue_fw.augmentations.permute import PermuteViewSpec
from clue_fw.augmentations.split import SplitViewSpec
from clue_fw.backbones.bag import DeepFMSpec, ItemMeanSpec, NFMSpec
from clue_fw.backbones.caser import CaserSpec
from clue_fw.backbones.cnn import NextItNetSpec
from clue_fw.backbones.gru import GRUSpec
from clue_fw.backbones.transformer import TransformerSpec
from clue_fw.components import AugmentationSpec, BackboneSpec, HeadSpec, ObjectiveSpec
from clue_fw.heads.cold_start import ColdStartSpec
from clue_fw.heads.next_item import NextItemSpec
from clue_fw.heads.profile import ProfileSpec
from clue_fw.hookspecs import hookimpl
from clue_fw.objectives.clue import ClueSpec
from clue_fw.objectives.infonce import InfoNceSpec
from clue_fw.objectives.masked_item import MaskedItemSpec
from clue_fw.objectives.none import NoPretrainingSpec


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
