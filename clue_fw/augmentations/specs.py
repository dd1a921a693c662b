"""The specs of the built-in views: what a recipe's ``pretrain.views`` entries say.

Free of torch, so that reading a recipe does not import it. Each spec's ``build`` imports
its view, where the exact rule is described: :mod:`clue_fw.augmentations.dropout`,
:mod:`~clue_fw.augmentations.mask`, :mod:`~clue_fw.augmentations.crop`,
:mod:`~clue_fw.augmentations.permute` and :mod:`~clue_fw.augmentations.split`. Each of
those modules re-exports its spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator

from clue_fw.specs import AugmentationSpec, BuildContext

if TYPE_CHECKING:
    from clue_fw.augmentations.crop import CropView
    from clue_fw.augmentations.dropout import DropoutView
    from clue_fw.augmentations.mask import MaskView
    from clue_fw.augmentations.permute import PermuteView
    from clue_fw.augmentations.split import SplitView


class DropoutViewSpec(AugmentationSpec):
    """Implicit view: two passes through the encoder with independent dropout masks.

    It never changes the items, so its ``probability`` must stay 1.
    """

    kind: Literal["dropout"] = "dropout"

    @field_validator("probability")
    @classmethod
    def _always(cls, value: float) -> float:
        if value != 1.0:
            raise ValueError(
                "the dropout view leaves the items unchanged (the backbone's dropout makes the "
                "two branches differ on every pass), so a probability other than 1 has no "
                f"effect; got {value}. Remove `probability`, or change the backbone's `dropout`"
            )
        return value

    def build(self, context: BuildContext) -> DropoutView:
        from clue_fw.augmentations.dropout import DropoutView

        return DropoutView()


class MaskViewSpec(AugmentationSpec):
    """Explicit view: replace each item by [MASK] with probability rho (CLUE Sec. IV-B)."""

    kind: Literal["mask"] = "mask"
    rho: float = Field(
        0.3,
        ge=0.0,
        lt=1.0,
        description="Probability that each real item is replaced by [MASK] (below 1: at 1 "
        "both views would be all [MASK], identical and empty).",
    )

    def build(self, context: BuildContext) -> MaskView:
        from clue_fw.augmentations.mask import MaskView

        return MaskView(self.rho, context.mask_id)


class CropViewSpec(AugmentationSpec):
    """Explicit view: remove a contiguous span (drop) or keep one (CL4SRec) (CLUE Sec. IV-B)."""

    kind: Literal["crop"] = "crop"
    rho: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Fraction of each sequence's items removed: floor(rho * L), at least one kept.",
    )
    mode: Literal["drop", "keep"] = Field(
        "drop",
        description="'drop' removes one contiguous span (CLUE); 'keep' keeps one contiguous "
        "span of L - floor(rho * L) items (CL4SRec crop with eta = 1 - rho).",
    )

    def build(self, context: BuildContext) -> CropView:
        from clue_fw.augmentations.crop import CropView

        return CropView(self.rho, self.mode)


class PermuteViewSpec(AugmentationSpec):
    """Explicit view: shuffle a random contiguous span covering rho of the items (Sec. IV-B)."""

    kind: Literal["permute"] = "permute"
    rho: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Fraction of each sequence's items in the shuffled span: floor(rho * L).",
    )

    def build(self, context: BuildContext) -> PermuteView:
        from clue_fw.augmentations.permute import PermuteView

        return PermuteView(self.rho)


class SplitViewSpec(AugmentationSpec):
    """Pair view: each branch of a pair gets a disjoint random part of the sequence."""

    kind: Literal["split"] = "split"
    pairs: ClassVar[bool] = True
    share: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="Fraction of each sequence's items in the first branch (floor(share * L), "
        "at least one item in each); the second branch gets the rest. Must be the first "
        "entry of the views list; the views after it change each part on its own.",
    )

    def build(self, context: BuildContext) -> SplitView:
        from clue_fw.augmentations.split import SplitView

        return SplitView(self.share)
