"""What the runner, the stages and inference read of a validated recipe, as types.

The Recipe class is assembled at run time from the registry (:mod:`clue_fw.recipe.model`),
so no static type names it. These protocols name the attributes its readers use; a
function that takes a recipe takes a :class:`RecipeLike`. They are read-only, as the
recipe models are frozen.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from clue_fw.data.specs import InteractionTableData, SequenceFileData, SyntheticData
from clue_fw.specs import AugmentationSpec, BackboneSpec, HeadSpec, ObjectiveSpec
from clue_fw.training.specs import EvalSpec, TrainSpec


class PretrainStageLike(Protocol):
    """``pretrain``: the objective, the views of a positive pair, and the optimisation."""

    @property
    def objective(self) -> ObjectiveSpec: ...
    @property
    def views(self) -> list[AugmentationSpec]: ...
    @property
    def train(self) -> TrainSpec | None: ...


class AuxiliaryTermLike(Protocol):
    """One ``finetune.auxiliary`` entry: a contrastive term added to the head's loss."""

    @property
    def objective(self) -> ObjectiveSpec: ...
    @property
    def views(self) -> list[AugmentationSpec]: ...
    @property
    def weight(self) -> float: ...


class FinetuneStageLike(Protocol):
    """``finetune``: the head, its optimisation, early stopping and evaluation, and what
    trains when (``mode``, ``probe_epochs``, ``encoder_lr_scale``)."""

    @property
    def head(self) -> HeadSpec: ...
    @property
    def train(self) -> TrainSpec: ...
    @property
    def patience(self) -> int: ...
    @property
    def monitor(self) -> str | None: ...
    @property
    def eval(self) -> EvalSpec: ...
    @property
    def init_from(self) -> str | None: ...
    @property
    def mode(self) -> Literal["full", "probe", "probe_then_full"]: ...
    @property
    def probe_epochs(self) -> int | None: ...
    @property
    def encoder_lr_scale(self) -> float: ...
    @property
    def auxiliary(self) -> list[AuxiliaryTermLike]: ...


class RecipeLike(Protocol):
    """A validated recipe, as :func:`clue_fw.recipe.validate_recipe` returns it."""

    @property
    def name(self) -> str | None: ...
    @property
    def seed(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def data(self) -> SequenceFileData | InteractionTableData | SyntheticData: ...
    @property
    def backbone(self) -> BackboneSpec: ...
    @property
    def pretrain(self) -> PretrainStageLike | None: ...
    @property
    def finetune(self) -> FinetuneStageLike: ...

    def model_dump(self, **kwargs: Any) -> dict[str, Any]: ...
