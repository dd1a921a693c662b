"""The Recipe model: a pydantic class assembled from what the registry holds.

The component parts of a recipe (``backbone``, ``pretrain.objective``, ``pretrain.views``,
``finetune.head``) are discriminated unions over the registered specs, so a plugin's
components are valid recipe entries as soon as it is installed. One model class is made
per registry (cached) and forgotten when the registry is reset.
"""

# No `from __future__ import annotations` here: the recipe classes are created
# inside functions and pydantic must see their (local) annotation objects.

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, field_validator, model_serializer, model_validator

from clue_fw.data.specs import DataSpec
from clue_fw.errors import RecipeError
from clue_fw.recipe.checks import (
    check_device,
    check_objective_dims,
    check_pairing_views,
    check_run_name,
    freezes_encoder,
    not_empty,
    position_states_problem,
    pretrains,
)
from clue_fw.registry import Registry, get_registry, on_registry_reset
from clue_fw.spec_dumps import drop_defaults
from clue_fw.specs import StrictModel
from clue_fw.training.specs import EvalSpec, TrainSpec


@functools.lru_cache(maxsize=8)
def _recipe_model_for(registry_id: int) -> type[BaseModel]:
    return _make_recipe_model(_REGISTRIES[registry_id])


_REGISTRIES: dict[int, Registry] = {}


def _union(registry: Registry, family: str) -> Any:
    specs = tuple(registry.specs(family))
    if not specs:
        raise RecipeError(f"No {family} is registered, so no recipe can validate.")
    union = Union[specs]  # type: ignore[valid-type]  # noqa: UP007 - built at run time
    return Annotated[union, Field(discriminator="kind")]


def _make_recipe_model(registry: Registry) -> type[BaseModel]:
    """The Recipe class over the specs ``registry`` holds (see :func:`recipe_model`)."""
    objective, view = _union(registry, "objective"), _union(registry, "augmentation")
    pretrain_stage = _pretrain_stage(objective, view)
    finetune_stage = _finetune_stage(_union(registry, "head"), _auxiliary_term(objective, view))
    return _recipe_class(_union(registry, "backbone"), pretrain_stage, finetune_stage, registry)


def _pretrain_stage(Objective: Any, View: Any) -> type[StrictModel]:
    class PretrainStage(StrictModel):
        """Self-supervised pre-training of the backbone."""

        objective: Objective = Field(description="The pre-training objective (see `clue list`).")
        views: list[View] = Field(  # type: ignore[valid-type]
            default_factory=lambda: [{"kind": "dropout"}],
            validate_default=True,
            min_length=1,
            description="Views applied in order to make each branch of a positive pair.",
        )
        train: TrainSpec | None = Field(
            None, description="Optimisation settings of pre-training (unused by `none`)."
        )

        @model_validator(mode="after")
        def _train_needed(self) -> "PretrainStage":
            if self.objective.trains and self.train is None:  # type: ignore[attr-defined]
                raise ValueError(
                    f"pretrain.train is required for objective {self.objective.kind!r}"  # type: ignore[attr-defined]
                )
            smallest = self.objective.min_batch_size  # type: ignore[attr-defined]
            if self.train is not None and self.train.batch_size < smallest:
                raise ValueError(
                    f"pretrain.train.batch_size: objective {self.objective.kind!r} needs "  # type: ignore[attr-defined]
                    f"batches of at least {smallest} sequences (BatchNorm needs batch "
                    f"statistics), got {self.train.batch_size}"
                )
            check_objective_dims(self.objective, "pretrain.objective")
            check_pairing_views(self.views, "pretrain.views")
            return self

    return PretrainStage


def _auxiliary_term(Objective: Any, View: Any) -> type[StrictModel]:
    class AuxiliaryTerm(StrictModel):
        """A contrastive term added to the fine-tuning loss (CL4SRec, DuoRec)."""

        objective: Objective = Field(
            description="A pre-training objective that trains (see `clue list`); its own "
            "modules (projector, predictor) are trained with the fine-tuning optimiser."
        )
        views: list[View] = Field(  # type: ignore[valid-type]
            default_factory=lambda: [{"kind": "dropout"}],
            validate_default=True,
            min_length=1,
            description="Views applied in order to make each branch of a positive pair.",
        )
        weight: float = Field(
            0.1,
            gt=0.0,
            description="Weight of the term: loss = head loss + sum of weight x term "
            "(CL4SRec and DuoRec: 0.1).",
        )

        @model_validator(mode="after")
        def _objective_trains(self) -> "AuxiliaryTerm":
            if not self.objective.trains:  # type: ignore[attr-defined]
                raise ValueError(
                    f"objective {self.objective.kind!r} trains nothing, so it adds no term "  # type: ignore[attr-defined]
                    "to the fine-tuning loss; name one that trains (such as clue), or remove "
                    "the entry"
                )
            check_objective_dims(self.objective, "objective")
            check_pairing_views(self.views, "views")
            return self

    return AuxiliaryTerm


def _finetune_stage(Head: Any, AuxiliaryTerm: Any) -> type[StrictModel]:
    class FinetuneStage(StrictModel):
        """Supervised fine-tuning of the (pre-trained) backbone with a downstream head."""

        head: Head = Field(description="The downstream task head (see `clue list`).")
        train: TrainSpec = Field(description="Optimisation settings of fine-tuning.")
        patience: int = Field(10, ge=1, description="Early stopping: epochs without improvement.")
        monitor: str | None = Field(
            None, description="Validation metric to maximise (default: the head's, e.g. ndcg@10)."
        )
        eval: EvalSpec = Field(EvalSpec(), description="Evaluation batching.")
        init_from: str | None = Field(
            None,
            description="Start from the encoder another run pre-trained: its "
            "`pretrain/encoder.safetensors`, or that run's directory (relative to the working "
            "directory). Pre-train once, fine-tune many tasks. Its backbone and item catalogue "
            "must match this recipe's; leave `pretrain` out.",
        )
        _no_empty = field_validator("monitor", "init_from")(
            classmethod(lambda cls, v: not_empty(v))
        )

        mode: Literal["full", "probe", "probe_then_full"] = Field(
            "full",
            description="'full': fine-tune the whole encoder (the paper); 'probe': freeze the "
            "encoder (eval mode, no gradients) and train only the head with this loop (not "
            "a converged probe: to measure the frozen vectors, use `clue probe`); "
            "'probe_then_full': LP-FT (Kumar et al., ICLR 2022), the first `probe_epochs` "
            "epochs as 'probe', then every parameter trains; patience counts only the later "
            "epochs (it starts at 0 when the encoder unfreezes), the best epoch is chosen "
            "over all.",
        )
        probe_epochs: int | None = Field(
            None,
            ge=1,
            description="Mode probe_then_full (required there, refused otherwise): the "
            "epochs that train only the head on the frozen encoder before it unfreezes; "
            "fewer than train.epochs. One lr schedule spans both phases.",
        )
        encoder_lr_scale: float = Field(
            1.0,
            gt=0.0,
            le=1.0,
            description="The encoder's parameters (backbone and item embeddings: what "
            "pre-training or init_from gave, or CLUEZero's initialisation) train at this "
            "factor x the learning rate of every step (lr after lr_scale and the schedule), "
            "the head (and auxiliary terms) at that rate. In (0, 1]; weight_decay is the "
            "same for both groups. Not with mode probe (a frozen encoder).",
        )

        @model_validator(mode="after")
        def _head_can_train(self) -> "FinetuneStage":
            _check_head_can_train(self)
            return self

        auxiliary: list[AuxiliaryTerm] = Field(
            default_factory=list,
            description="Contrastive terms added to the fine-tuning loss (CL4SRec, DuoRec): "
            "each runs its objective on two views of the sequences the head trains on, "
            "through the same encoder, and adds weight x its loss.",
        )

        @model_validator(mode="after")
        def _auxiliary_and_phases_fit(self) -> "FinetuneStage":
            _check_auxiliary_terms(self)
            _check_phases(self)
            return self

        @model_serializer(mode="wrap")
        def _without_defaults(self, handler: Any) -> Any:
            """No ``auxiliary`` key when there is no term, and no ``probe_epochs`` or
            ``encoder_lr_scale`` at their defaults: a recipe that does not use them dumps
            as before the options existed (same recipe sha256; older runs still resume)."""
            return drop_defaults(handler(self), self, FINETUNE_DEFAULTS)

    return FinetuneStage


FINETUNE_DEFAULTS: dict[str, Any] = {"auxiliary": [], "probe_epochs": None, "encoder_lr_scale": 1.0}
"""The ``finetune`` keys that dumps leave out while they hold these values."""


def _check_head_can_train(stage: Any) -> None:
    """The head trains on the stage's ``history`` windows, and can be probed if asked."""
    problem = stage.head.history_problem(stage.train.history)
    if problem:
        raise ValueError(f"finetune.train.history: {problem}")
    if freezes_encoder(stage.mode):
        reason = stage.head.probe_ready
        if reason:
            raise ValueError(f"finetune.mode {stage.mode}: {reason}")


def _check_phases(stage: Any) -> None:
    """``probe_epochs`` belongs to probe_then_full and leaves it a full phase;
    ``encoder_lr_scale`` needs an encoder that trains."""
    epochs = stage.train.epochs
    if stage.mode == "probe_then_full":
        if stage.probe_epochs is None:
            raise ValueError(
                "finetune.probe_epochs: mode probe_then_full trains the head alone for "
                "probe_epochs epochs before the encoder unfreezes; set it (e.g. "
                f"finetune.probe_epochs: {max(1, epochs // 3)}, a third of train.epochs)"
            )
        if stage.probe_epochs >= epochs:
            fix = f"use at most {epochs - 1}" if epochs > 1 else "raise train.epochs to 2"
            raise ValueError(
                f"finetune.probe_epochs ({stage.probe_epochs}) must be less than "
                f"finetune.train.epochs ({epochs}), or the encoder never unfreezes; {fix}, "
                "or use mode probe to train only the head"
            )
    elif stage.probe_epochs is not None:
        raise ValueError(
            f"finetune.probe_epochs is a setting of mode probe_then_full, and mode is "
            f"{stage.mode}; set finetune.mode: probe_then_full, or remove probe_epochs"
        )
    if stage.mode == "probe" and stage.encoder_lr_scale != 1.0:
        raise ValueError(
            "finetune.encoder_lr_scale: mode probe freezes the encoder, so it has no "
            "learning rate; remove encoder_lr_scale, or use mode full or probe_then_full"
        )


def _check_auxiliary_terms(stage: Any) -> None:
    """Auxiliary terms need a fully trained encoder, a head that allows them, and batches
    their objectives can normalise."""
    if not stage.auxiliary:
        return
    if freezes_encoder(stage.mode):
        raise ValueError(
            "finetune.auxiliary: auxiliary terms train the encoder, which "
            f"finetune.mode {stage.mode} freezes"
            + (" for its probe epochs" if stage.mode != "probe" else "")
            + "; use mode full, or remove the terms"
        )
    reason = stage.head.auxiliary_problem
    if reason:
        raise ValueError(f"finetune.auxiliary: {reason}")
    for index, term in enumerate(stage.auxiliary):
        smallest = term.objective.min_batch_size
        if stage.train.batch_size < smallest:
            raise ValueError(
                f"finetune.train.batch_size: the {term.objective.kind!r} objective "
                f"of finetune.auxiliary.{index} needs batches of at least {smallest} "
                f"sequences (BatchNorm needs batch statistics), got "
                f"{stage.train.batch_size}"
            )


def _recipe_class(
    Backbone: Any, PretrainStage: Any, FinetuneStage: Any, registry: Registry
) -> type[StrictModel]:
    class Recipe(StrictModel):
        """A complete clue_fw experiment: data, backbone, optional pre-training, fine-tuning."""

        name: str | None = Field(
            None,
            description="Run name (default: the recipe file name); one folder name, as the "
            "default run directory is runs/<name>/<time>.",
        )
        seed: int = Field(0, description="Seed of every random number generator.")
        device: str = Field("auto", description="auto (CUDA where present), cpu, cuda, cuda:N.")
        data: DataSpec = Field(
            description="Where sequences come from; `format` selects the reader."
        )
        backbone: Backbone = Field(description="The sequence encoder (see `clue list`).")
        pretrain: PretrainStage | None = Field(
            None, description="Omit for CLUEZero (no pre-training)."
        )
        finetune: FinetuneStage = Field(description="Downstream fine-tuning and evaluation.")

        _check_device = field_validator("device")(classmethod(lambda cls, v: check_device(v)))
        _check_name = field_validator("name")(classmethod(lambda cls, v: check_run_name(v)))

        @model_validator(mode="after")
        def _backbone_fits(self) -> "Recipe":
            fits = getattr(self.backbone, "max_len_problem", None)
            problem = fits(self.data.max_len) if callable(fits) else None  # type: ignore[attr-defined]
            if problem:
                raise ValueError(problem)
            problem = position_states_problem(self, registry)
            if problem:
                raise ValueError(problem)
            return self

        @model_validator(mode="after")
        def _one_source_of_weights(self) -> "Recipe":
            if pretrains(self) and self.finetune.init_from:  # type: ignore[attr-defined]
                raise ValueError(
                    "finetune.init_from: the encoder would come both from this recipe's "
                    "pre-training and from init_from; remove one of them"
                )
            return self

    return Recipe


def recipe_model(registry: Registry | None = None) -> type[BaseModel]:
    """The Recipe model class for ``registry`` (default: the process registry)."""
    registry = registry or get_registry()
    _REGISTRIES[id(registry)] = registry
    return _recipe_model_for(id(registry))


def clear_recipe_model_cache() -> None:
    _recipe_model_for.cache_clear()
    _REGISTRIES.clear()


on_registry_reset(clear_recipe_model_cache)  # a new registry means new recipe models


# --------------------------------------------------------------------------- errors
