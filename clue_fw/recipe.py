"""Recipes: validated pydantic models, loaded from YAML or built in code.

The component parts of a recipe (``backbone``, ``pretrain.objective``,
``pretrain.views``, ``finetune.head``) are discriminated unions over whatever the
registry holds, so a plugin's components are valid recipe entries as soon as it
is installed. Unknown kinds and misspelt keys are reported with their recipe path.
"""

# No `from __future__ import annotations` here: the recipe classes are created
# inside a function and pydantic must see their (local) annotation objects.

import functools
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from clue_fw.data.seeds import GeneratorSeed
from clue_fw.errors import QUOTE_LIMIT, RecipeError, quote
from clue_fw.file_safety import read_file
from clue_fw.registry import Registry, get_registry, on_registry_reset

FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a learning rate or weight decay above it overflows the optimiser."""

MAX_CUDA_INDEX = 127
MAX_OBJECTIVE_DIM = 65536
"""The largest ``projector_dim`` / ``predictor_dim`` of a pre-training objective."""
"""The largest N of a ``cuda:N`` device (torch stores device indices in 8 bits)."""
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:(?P<index>0|[1-9][0-9]{0,2}))?)", re.ASCII)


class StrictModel(BaseModel):
    """Base of the recipe sections: frozen, unknown keys are errors, and no type coercion.

    ``strict``: a boolean is not an integer (``seed: true``), a string is not a number
    (``dim: "16"``) and a float is not an integer (``epochs: 2.0``); an integer is a
    float. Component specs are strict in the same way (:class:`ComponentSpec`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


# --------------------------------------------------------------------------- data


MAX_LEN = 1_000_000
"""The largest ``data.max_len`` a recipe may set (a padded batch is batch x max_len)."""


class _DataBase(StrictModel):
    max_len: int = Field(
        50,
        gt=0,
        le=MAX_LEN,
        description="n: keep each user's n most recent items as model input (at most 1,000,000).",
    )
    min_user_interactions: int = Field(
        3, ge=0, description="k-core: drop users with fewer interactions (at least 3 kept)."
    )
    min_item_interactions: int = Field(
        1, ge=0, description="k-core: drop items with fewer interactions (iterated with users)."
    )


class SequenceFileData(_DataBase):
    """A sequence file: ``user item item ...`` per line, oldest item first."""

    format: Literal["sequences"] = "sequences"
    path: str = Field(description="File path, relative to the data root (CLUE_DATA_DIR).")


class InteractionTableData(_DataBase):
    """An interaction table with user, item and timestamp columns."""

    format: Literal["interactions"] = "interactions"
    path: str = Field(description="File path, relative to the data root (CLUE_DATA_DIR).")
    columns: list[str] | None = Field(
        None, description="Column names; must include user, item, timestamp. Default: guessed."
    )
    separator: Literal["auto", "::", "tab", "comma", "whitespace"] = Field(
        "auto", description="Column separator; auto detects ::, tab, comma or whitespace."
    )
    skip_header: bool = Field(False, description="Ignore the first line.")

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        repeated = _repeated(value)
        if repeated:
            raise ValueError(
                f"column {quote(repeated[0])} is named more than once; give each column its "
                "own name (e.g. [user, item, rating, timestamp])"
            )
        return value


class SyntheticData(_DataBase):
    """Sequences generated in-process with planted cluster-cycle structure (no files)."""

    format: Literal["synthetic"] = "synthetic"
    num_users: int = Field(1000, gt=0, description="Users to generate.")
    num_items: int = Field(200, gt=1, description="Catalogue size.")
    min_length: int = Field(10, ge=3, description="Shortest generated sequence.")
    max_length: int = Field(40, ge=3, description="Longest generated sequence.")
    num_clusters: int = Field(8, gt=0, description="Item clusters; each user walks one.")
    stickiness: float = Field(
        0.8, ge=0.0, le=1.0, description="Probability that the next item follows the cycle."
    )
    seed: GeneratorSeed = Field(
        0,
        description="Seed of the generator (independent of the run seed), in 0 .. 2**32 - 1.",
    )


def _repeated(values: list[Any]) -> list[Any]:
    """The values that occur more than once in ``values``, in order of first repeat."""
    seen: set[Any] = set()
    repeated: list[Any] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


DataSpec = Annotated[
    SequenceFileData | InteractionTableData | SyntheticData, Field(discriminator="format")
]


# --------------------------------------------------------------------------- training


class TrainSpec(StrictModel):
    """Optimisation settings of one stage: optimiser, learning-rate schedule, batches.

    The optimiser and schedule are built by :mod:`clue_fw.training.optim`; the defaults
    (Adam, constant lr) are the paper's.
    """

    epochs: int = Field(
        gt=0, description="Maximum number of epochs (the lr schedule is planned over them)."
    )
    batch_size: int = Field(256, gt=0, description="Training examples per optimiser step.")
    lr: float = Field(
        1e-3,
        gt=0.0,
        description="Learning rate (paper: Adam at 1e-3); the peak of a schedule, times "
        "batch_size / 256 under lr_scale linear. At most the largest float32 (the optimiser "
        "computes in float32), also once scaled.",
    )
    weight_decay: float = Field(
        0.0,
        ge=0.0,
        description="Weight decay: an L2 term in the gradient for adam and sgd, decoupled "
        "(applied to the weights) for adamw.",
    )
    optimizer: Literal["adam", "adamw", "sgd"] = Field(
        "adam",
        description="'adam' (the paper), 'adamw' (Adam with decoupled weight decay) or "
        "'sgd' (with momentum).",
    )
    betas: list[Annotated[float, Field(ge=0.0, lt=1.0)]] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Adam/AdamW moment decay rates [beta1, beta2], each in [0, 1) "
        "(default [0.9, 0.999]); adam and adamw only.",
    )
    momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="SGD momentum in [0, 1) (default 0.9); sgd only."
    )
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant",
        description="Learning rate after warm-up: 'constant' (lr), or 'cosine' / 'linear' "
        "decay from lr to min_lr over the stage's planned steps (epochs x batches).",
    )
    warmup_epochs: float = Field(
        0.0,
        ge=0.0,
        description="Linear warm-up from lr / warm-up steps to lr over this many epochs "
        "(fractions allowed: 0.5 is half an epoch's steps); 0 is none.",
    )
    min_lr: float = Field(
        0.0,
        ge=0.0,
        description="Floor of a cosine or linear decay (an absolute value, not scaled by "
        "lr_scale).",
    )
    lr_scale: Literal["none", "linear"] = Field(
        "none",
        description="'linear': the effective lr is lr x batch_size / 256 (SimSiam's rule); "
        "batch_size is the global batch, also in a data-parallel run.",
    )
    grad_clip: float | None = Field(
        None, gt=0.0, description="Clip the gradient norm to this value (off when unset)."
    )
    history: Literal["recent", "all"] = Field(
        "recent",
        description="'recent': train on each user's n most recent items (the paper); 'all': "
        "cut long histories into windows that cover every interaction.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="'bf16': run the training steps under bfloat16 autocast (about twice as "
        "fast on recent GPUs; weights, optimiser and evaluation stay float32).",
    )

    @model_serializer(mode="wrap")
    def _without_default_optimisation(self, handler: Any) -> Any:
        """Leave the optimiser and schedule keys out of dumps while they hold their
        defaults: a recipe that does not use them keeps the recipe.yaml and recipe
        sha256 it had before they existed, so runs started then still resume."""
        data = handler(self)
        if isinstance(data, dict):
            for key, default in OPTIMISATION_DEFAULTS.items():
                if key in data and getattr(self, key) == default:
                    data.pop(key)
        return data

    @property
    def peak_lr(self) -> float:
        """The learning rate after warm-up: ``lr``, times ``batch_size / 256`` under
        ``lr_scale: linear``. The one place that applies ``lr_scale``."""
        if self.lr_scale == "linear":
            return self.lr * self.batch_size / LR_SCALE_BATCH
        return self.lr

    def _check_step_fits_float32(self) -> None:
        """Refuse a learning rate whose optimiser step overflows float32: the peak rate
        (scaled under ``lr_scale: linear``), divided by Adam's first bias correction
        ``1 - beta1``, and times ``weight_decay`` for adamw's decoupled decay."""
        scaled = " x batch_size / 256 (lr_scale linear)" if self.lr_scale == "linear" else ""
        if self.optimizer == "sgd":
            terms = [(self.peak_lr, f"the learning rate lr{scaled}")]
        else:
            beta1 = (self.betas or [0.9, 0.999])[0]
            terms = [
                (self.peak_lr / (1.0 - beta1), f"Adam's first step, lr{scaled} / (1 - beta1),")
            ]
            if self.optimizer == "adamw":
                terms.append((self.peak_lr * self.weight_decay, f"lr{scaled} x weight_decay"))
        for value, what in terms:
            if not value <= FLOAT32_MAX:
                raise ValueError(
                    f"{what} is {value:.4g}, more than the largest float32 ({FLOAT32_MAX:.4g}), "
                    "so the optimiser step would overflow; lower lr (a value near 1e-3 is "
                    "usual)" + (" or batch_size, or set lr_scale: none" if scaled else "")
                )

    @field_validator("lr", "min_lr", "weight_decay")
    @classmethod
    def _fits_float32(cls, value: float) -> float:
        if value > FLOAT32_MAX:
            raise ValueError(
                f"{value:.4g} is more than the largest float32 ({FLOAT32_MAX:.4g}); the "
                "optimiser computes in float32, so its step would overflow. Use a value below "
                "it (a learning rate near 1e-3 is usual)"
            )
        return value

    @model_validator(mode="after")
    def _optimisation_fits(self) -> "TrainSpec":
        self._check_step_fits_float32()
        if self.momentum is not None and self.optimizer != "sgd":
            raise ValueError(
                f"momentum is a setting of optimizer sgd, not {self.optimizer}; remove it "
                "(adam and adamw take betas) or set optimizer: sgd"
            )
        if self.betas is not None and self.optimizer == "sgd":
            raise ValueError(
                "betas is a setting of optimizer adam or adamw, not sgd; remove it (sgd "
                "takes momentum) or set optimizer: adam"
            )
        if self.schedule == "constant" and self.min_lr > 0:
            raise ValueError(
                f"min_lr ({self.min_lr:g}) is the floor of a decaying schedule, and schedule "
                "is constant; set schedule: cosine or linear, or remove min_lr"
            )
        if self.schedule != "constant" and self.min_lr >= self.peak_lr:
            scaled = (
                " (lr x batch_size / 256, lr_scale linear)" if self.lr_scale == "linear" else ""
            )
            raise ValueError(
                f"min_lr ({self.min_lr:g}) must be below the peak learning rate "
                f"{self.peak_lr:g}{scaled}, or the {self.schedule} schedule never decays"
            )
        warmup, epochs = self.warmup_epochs, self.epochs
        if self.schedule == "constant" and warmup > epochs:
            raise ValueError(
                f"warmup_epochs ({warmup:g}) is longer than the stage ({epochs} epochs); "
                f"use at most {epochs}"
            )
        if self.schedule != "constant" and warmup >= epochs:
            raise ValueError(
                f"warmup_epochs ({warmup:g}) leaves no epoch of the {epochs} for the "
                f"{self.schedule} decay; use fewer than {epochs} (fractions are allowed)"
            )
        return self


OPTIMISATION_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "betas": None,
    "momentum": None,
    "schedule": "constant",
    "warmup_epochs": 0.0,
    "min_lr": 0.0,
    "lr_scale": "none",
}
"""The optimiser and schedule settings that dumps leave out while they are these."""

LR_SCALE_BATCH = 256
"""``lr_scale: linear`` multiplies lr by ``batch_size / LR_SCALE_BATCH`` (SimSiam)."""


class EvalSpec(StrictModel):
    batch_size: int = Field(1024, gt=0, description="Users scored at once in full ranking.")


def _device(value: str) -> str:
    match = _DEVICE.fullmatch(value)
    index = match and match.group("index")
    if not match or (index and int(index) > MAX_CUDA_INDEX):
        raise ValueError(
            f"device must be auto, cpu, mps, cuda or cuda:N, got {quote(value)} (N is a GPU "
            f"index from 0 to {MAX_CUDA_INDEX}, written without leading zeros)"
        )
    return value


def _not_empty(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("an empty string is not a value; leave the key out or write null")
    return value


MAX_NAME_LENGTH = 100
"""A recipe ``name`` is at most this many characters (it names a folder under runs/)."""


def _run_name(value: str | None) -> str | None:
    """A recipe name is one safe path component: the default run directory is
    ``runs/<name>/<time>``, so ``/abs``, ``../x`` or ``a/b`` would write elsewhere."""
    if value is None:
        return value
    allowed = (
        f"a name must be one folder name of 1 to {MAX_NAME_LENGTH} characters: letters, "
        "digits, spaces and punctuation, without '/', '\\', control or invisible format "
        "characters, and not '.' or '..'"
    )
    if not value.strip():
        raise ValueError(f"the name is empty; {allowed}")
    bad = sorted({c for c in value if _unsafe_in_name(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(
            f"{quote(value)} is not a single folder name (it contains {shown}); {allowed}"
        )
    if value in (".", "..") or len(value) > MAX_NAME_LENGTH or value != value.strip():
        raise ValueError(f"{quote(value)} is not a safe folder name; {allowed}")
    return value


def _unsafe_in_name(character: str) -> bool:
    """Path separators, control characters and invisible format characters (zero-width
    spaces, right-to-left overrides) have no place in a folder name."""
    return character in "/\\" or unicodedata.category(character) in ("Cc", "Cf")


def default_name(stem: str) -> str:
    """The ``name`` of a recipe that gives none: its file's stem, made into a valid name
    when it is not one (``..yaml``, a stem of 300 characters), so that such a file still
    runs instead of failing on a key it never set."""
    try:
        return _run_name(stem) or "recipe"
    except ValueError:
        cleaned = "".join("_" if _unsafe_in_name(c) else c for c in stem)
        return cleaned[:MAX_NAME_LENGTH].strip(" .") or "recipe"


def pretrains(recipe: Any) -> bool:
    """Whether ``recipe`` pre-trains its encoder: the one place that decides it.

    True when it has a ``pretrain`` section whose objective trains (``none`` does not).
    The runner, the recipe's own checks and the memory estimate all ask this function.
    """
    return recipe.pretrain is not None and bool(recipe.pretrain.objective.trains)


def _check_objective_dims(objective: Any, where: str) -> None:
    """Refuse a ``projector_dim`` / ``predictor_dim`` above :data:`MAX_OBJECTIVE_DIM`."""
    for name in ("projector_dim", "predictor_dim"):
        value = getattr(objective, name, None)
        if isinstance(value, int) and value > MAX_OBJECTIVE_DIM:
            raise ValueError(f"{where}.{name} must be at most {MAX_OBJECTIVE_DIM}, got {value}")


def _check_pairing_views(views: list[Any], where: str) -> None:
    """Refuse a pairing view (``split``) anywhere but first in a views list."""
    for index, view in enumerate(views):
        if getattr(view, "pairs", False) and index > 0:
            raise ValueError(
                f"{where}.{index}: the {view.kind!r} view makes the two branches of a pair "
                "(each gets its own part of the sequence), so it must be the first entry of "
                "the views list, and there can be only one; move it to the top (the views "
                "after it then change each part on its own)"
            )


def _state_readers(recipe: Any) -> Iterator[tuple[str, Any]]:
    """``(recipe key, spec)`` of every objective and head of ``recipe`` that gets encoder
    outputs: the pre-training objective, the fine-tuning head and each auxiliary term."""
    if pretrains(recipe):
        yield "pretrain.objective", recipe.pretrain.objective
    yield "finetune.head", recipe.finetune.head
    for index, term in enumerate(recipe.finetune.auxiliary):
        yield f"finetune.auxiliary.{index}.objective", term.objective


def position_states_problem(recipe: Any, registry: Registry) -> str | None:
    """Why ``recipe`` cannot run because its backbone has no per-position states
    (``BackboneSpec.position_states``) and an objective or head reads them
    (``position_states_use``); None when it can. The one place that decides it."""
    backbone = recipe.backbone
    if getattr(backbone, "position_states", True):
        return None
    for where, spec in _state_readers(recipe):
        reads = getattr(spec, "position_states_use", None)
        use = reads(where) if callable(reads) else None
        if use:
            others = sorted(
                entry.kind
                for entry in registry.entries["backbone"].values()
                if getattr(entry.spec, "position_states", True)
            )
            alternative = f" ({', '.join(others)})" if others else ""
            return (
                f"backbone {backbone.kind!r} has no per-position states (it encodes a "
                f"sequence into one user vector), but {use}; or use a backbone with "
                f"per-position states{alternative}"
            )
    return None


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
    Backbone = _union(registry, "backbone")
    View = _union(registry, "augmentation")
    Objective = _union(registry, "objective")
    Head = _union(registry, "head")

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
            _check_objective_dims(self.objective, "pretrain.objective")
            _check_pairing_views(self.views, "pretrain.views")
            return self

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
            _check_objective_dims(self.objective, "objective")
            _check_pairing_views(self.views, "views")
            return self

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
            classmethod(lambda cls, v: _not_empty(v))
        )

        mode: Literal["full", "probe"] = Field(
            "full",
            description="'full': fine-tune the whole encoder (the paper); 'probe': freeze the "
            "encoder (eval mode, no gradients) and train only the head with this loop (not "
            "a converged probe: to measure the frozen vectors, use `clue probe`).",
        )

        @model_validator(mode="after")
        def _head_can_train(self) -> "FinetuneStage":
            problem = self.head.history_problem(self.train.history)  # type: ignore[attr-defined]
            if problem:
                raise ValueError(f"finetune.train.history: {problem}")
            if self.mode == "probe":
                reason = self.head.probe_ready  # type: ignore[attr-defined]
                if reason:
                    raise ValueError(f"finetune.mode probe: {reason}")
            return self

        auxiliary: list[AuxiliaryTerm] = Field(
            default_factory=list,
            description="Contrastive terms added to the fine-tuning loss (CL4SRec, DuoRec): "
            "each runs its objective on two views of the sequences the head trains on, "
            "through the same encoder, and adds weight x its loss.",
        )

        @model_validator(mode="after")
        def _auxiliary_fits(self) -> "FinetuneStage":
            if not self.auxiliary:
                return self
            if self.mode == "probe":
                raise ValueError(
                    "finetune.auxiliary: auxiliary terms train the encoder, which "
                    "finetune.mode probe freezes; use mode full, or remove the terms"
                )
            reason = self.head.auxiliary_problem  # type: ignore[attr-defined]
            if reason:
                raise ValueError(f"finetune.auxiliary: {reason}")
            for index, term in enumerate(self.auxiliary):
                smallest = term.objective.min_batch_size  # type: ignore[attr-defined]
                if self.train.batch_size < smallest:
                    raise ValueError(
                        f"finetune.train.batch_size: the {term.objective.kind!r} objective "  # type: ignore[attr-defined]
                        f"of finetune.auxiliary.{index} needs batches of at least {smallest} "
                        f"sequences (BatchNorm needs batch statistics), got "
                        f"{self.train.batch_size}"
                    )
            return self

        @model_serializer(mode="wrap")
        def _without_empty_auxiliary(self, handler: Any) -> Any:
            """No ``auxiliary`` key when there is no term: a recipe without terms dumps as
            before the option existed (same recipe sha256; older runs still resume)."""
            data = handler(self)
            if not self.auxiliary and isinstance(data, dict):
                data.pop("auxiliary", None)
            return data

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

        _check_device = field_validator("device")(classmethod(lambda cls, v: _device(v)))
        _check_name = field_validator("name")(classmethod(lambda cls, v: _run_name(v)))

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


def _readable_location(loc: tuple[Any, ...], data: Any) -> list[str]:
    """Recipe path of a pydantic error, skipping union tags that are not real keys."""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(node, dict) and step in node:
            parts.append(str(step))
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            parts.append(str(step))
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and not parts[-1:] == [step]:
            # A key that is absent in the input (missing field) or a union tag.
            if step in ("sequences", "interactions", "synthetic") or _looks_like_tag(node, step):
                continue
            parts.append(step)
            node = None
        else:
            continue
    return parts


def _looks_like_tag(node: dict[str, Any], step: str) -> bool:
    return node.get("kind") == step or node.get("format") == step


class _Problem(NamedTuple):
    """One problem of a recipe: its recipe path, pydantic error type and message."""

    parts: tuple[str, ...]
    kind: str
    message: str


def _problems(error: ValidationError, data: Any) -> list[_Problem]:
    problems = []
    for item in error.errors():
        parts = tuple(_readable_location(tuple(item["loc"]), data))
        message = item["msg"]
        if item["type"] == "union_tag_invalid":
            tag = item.get("ctx", {}).get("tag")
            expected = item.get("ctx", {}).get("expected_tags")
            message = f"unknown kind {quote(tag)}; registered: {expected} (see `clue list`)"
        elif item["type"] == "union_tag_not_found":
            message = "missing `kind` (or `format`) key that selects the component"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif item["type"] in _STRICT_TYPES:
            message += _what_was_given(item["type"], item.get("input"))
        problems.append(_Problem(parts, item["type"], message))
    return problems


_STRICT_TYPES = ("int_type", "float_type", "bool_type")
_YAML11_NUMBER = re.compile(
    r"^[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?)$"
)
"""A number in YAML 1.1 (PyYAML) but a string in YAML 1.2: ``1:30``, ``0b101``, ``1_0``."""


def _yaml11_only(text: str) -> bool:
    return ":" in text or "_" in text or text.lstrip("-+").startswith("0b")


def _what_was_given(kind: str, given: Any) -> str:
    """Why a strict type check failed: recipes are not coerced (``seed: true`` is no 1)."""
    if isinstance(given, bool):
        return f", not the boolean {str(given).lower()}"
    if isinstance(given, str):
        if kind != "bool_type" and _YAML11_NUMBER.match(given) and _yaml11_only(given):
            return (
                f", not the string {quote(given)}: recipe numbers follow YAML 1.2, which has "
                "no sexagesimal (1:30), binary (0b101) or underscore (1_000) numbers; "
                "write plain decimal digits"
            )
        return f", not the string {quote(given)}: write numbers and booleans without quotes"
    if kind == "int_type" and isinstance(given, float):
        if given.is_integer():
            return f", not the float {given}: write it without a decimal point"
        return ", got a number with a fractional part"
    if kind == "bool_type" and isinstance(given, int | float):
        return f", not the number {given}: write true or false"
    return ""


def _describe_problems(
    problems: list[_Problem], source: str, overrides: list["Override"] | None = None
) -> str:
    """One paragraph listing every problem with its recipe path (and ``--set`` flag, if any)."""
    lines = []
    for problem in problems:
        where = ".".join(_clip(part) for part in problem.parts) or "(top level)"
        flag = _blamed_override(problem.parts, problem.kind, overrides or [])
        lines.append(f"{f'--set {_flag(flag)}: ' if flag else ''}{where}: {problem.message}")
    count = len(lines)
    head = f"Recipe {source} is invalid ({count} problem{'s' if count > 1 else ''}):"
    return head + " " + "; ".join(lines) + "." + _kind_switch_hint(problems, overrides or [])


def _kind_switch_hint(problems: list[_Problem], overrides: list["Override"]) -> str:
    """Advice for ``--set SECTION.kind=NEW`` that left the old kind's fields behind."""
    for override in overrides:
        if len(override.path) < 2 or override.path[-1] != "kind":
            continue
        section = override.path[:-1]
        if any(tuple(p.parts[:-1]) == section and "Extra inputs" in p.message for p in problems):
            where = _dotted(list(section))
            kind = override.flag.partition("=")[2].strip()
            return (
                f" --set {where}.kind=... changes only the kind and keeps the fields of the "
                f"old one; replace the whole section instead, with the fields you want: "
                f"--set '{where}={{kind: {_clip(kind)}}}' (`clue show {kind}` lists its "
                "fields)."
            )
    return ""


def format_validation_error(
    error: ValidationError, data: Any, source: str, overrides: list["Override"] | None = None
) -> str:
    """One paragraph listing every problem with its recipe path (and ``--set`` flag, if any)."""
    return _describe_problems(_problems(error, data), source, overrides)


def _flag(flag: str) -> str:
    """A ``--set key=value`` flag for an error message: key and value each cut to
    QUOTE_LIMIT characters (a value may be thousands of characters long)."""
    key, equals, value = flag.partition("=")
    shown = _clip(key) + equals + _clip(value)
    if shown == flag:
        return repr(flag)
    return f"{shown!r} ({len(flag):,} characters)"


def _dotted(keys: list[str]) -> str:
    return ".".join(_clip(key) for key in keys)


def _clip(key: str) -> str:
    return key if len(key) <= QUOTE_LIMIT else key[:QUOTE_LIMIT] + "..."


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Every integer in a recipe must lie in this range (seeds go to 64-bit generators)."""


def _entries(data: Any) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """``(recipe path, key, value)`` of every entry below ``data`` (and ``((), None,
    data)`` for the root). A container reached twice through YAML aliases is walked once;
    the walk is iterative, so a deep recipe cannot exhaust the stack."""
    seen: set[int] = set()
    stack: list[tuple[tuple[str, ...], Any, Any]] = [((), None, data)]
    while stack:
        parts, key, node = stack.pop()
        yield parts, key, node
        if isinstance(node, dict | list | tuple) and id(node) not in seen:
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend(((*parts, _printable(k)), k, v) for k, v in items)


def _out_of_range_integers(data: Any) -> list[_Problem]:
    """An integer anywhere in ``data`` that does not fit in 64 bits, with its recipe path."""
    problems = []
    for parts, _, node in _entries(data):
        if isinstance(node, int) and not isinstance(node, bool):
            if not INT64_MIN <= node <= INT64_MAX:
                digits = len(str(abs(node)))
                problems.append(
                    _Problem(
                        parts,
                        "int_out_of_range",
                        f"the integer ({digits} digits) does not fit in 64 bits; recipe "
                        "integers must lie in -2**63 .. 2**63 - 1",
                    )
                )
    return sorted(problems)


def _non_utf8_strings(data: Any) -> list[_Problem]:
    """A key or string anywhere in ``data`` that UTF-8 cannot encode (a lone surrogate,
    as ``--set`` or a file name can carry), with its recipe path."""
    problems = []
    for parts, key, node in _entries(data):
        if isinstance(key, str) and not _encodable(key):
            problems.append(_utf8_problem(parts, "key"))
        if isinstance(node, str) and not _encodable(node):
            problems.append(_utf8_problem(parts, "value"))
    return sorted(problems)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: Any) -> str:
    return str(key).encode("utf-8", "backslashreplace").decode("utf-8")


def _utf8_problem(parts: tuple[str, ...], what: str) -> _Problem:
    return _Problem(
        parts,
        "string_not_utf8",
        f"the {what} is not valid text: it holds a character UTF-8 cannot encode (a lone "
        "surrogate, e.g. from undecodable bytes in a command line or file name)",
    )


def _blamed_override(where: tuple[str, ...], kind: str, overrides: list["Override"]) -> str | None:
    """The last ``--set`` that explains an error at ``where`` (of pydantic type ``kind``).

    An error lies inside what the override created or set, or it is reported on a section
    above the key that the override set, by a validator of that section (``heads`` must
    divide ``dim``) or as an unknown ``kind``/``format``.
    """
    for override in reversed(overrides):
        path, created = override.path, override.created
        if where[: len(created)] == created:
            return override.flag
        above = 0 < len(where) < len(path) and path[: len(where)] == where
        if above and (
            kind == "value_error"
            or (kind == "union_tag_invalid" and path[len(where) :] in (("kind",), ("format",)))
        ):
            return override.flag
    return None


# --------------------------------------------------------------------------- loading

MAX_RECIPE_BYTES = 1 << 20
"""Recipes larger than this (1 MiB) are refused before parsing."""
MAX_YAML_ALIASES = 100
"""At most this many ``*alias`` references per document (a guard against YAML bombs)."""
MAX_YAML_NODES = 100_000
"""At most this many nodes once every alias is expanded (a billion-laughs guard)."""
MAX_YAML_DEPTH = 100
"""Collections may nest at most this deep (PyYAML composes recursively)."""


class _YamlLimit(Exception):
    """A YAML document breaks one of the limits above; the message says which."""


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and nesting depth while it composes the node graph."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                raise _YamlLimit(f"it nests deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


# Numbers follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 rules: 1.1 reads `010`
# as octal 8, `1:30` as sexagesimal 90, `0b101` as 5 and `1_0` as 10, and reads `1e-3`
# as a string. Here an int is decimal `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`; a
# float is a decimal with a point and/or an exponent, `.inf` or `.nan`. A decimal int with
# a leading zero (`010`) is refused rather than read as 8 (1.1) or 10 (1.2), so a recipe
# written for either reading never changes meaning silently. Anything else (`1:30`,
# `0b101`, `1_0`) stays a string, which strict validation refuses with the field's path.
_YAML12_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_YAML12_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_GuardedLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Ints first: a float pattern also matches plain digits.
_GuardedLoader.add_implicit_resolver("tag:yaml.org,2002:int", _YAML12_INT, list("-+0123456789"))
_GuardedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789.")
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if not _YAML12_INT.match(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a YAML 1.2 integer", node.start_mark
        )
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    if len(text.lstrip("-+")) > 1 and text.lstrip("-+").startswith("0"):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"the integer {text} has a leading zero (YAML 1.1 reads it as octal, YAML 1.2 "
            "as decimal); write it without leading zeros, or as 0o... for octal",
            node.start_mark,
        )
    return int(text)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if not _YAML12_FLOAT.match(text):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text!r} is not a YAML 1.2 float", node.start_mark
        )
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


_GuardedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_GuardedLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_node_graph(root: yaml.Node) -> None:
    """Refuse recursive aliases, duplicate keys, and alias expansion beyond MAX_YAML_NODES.

    Iterative and linear in the number of distinct nodes: aliases share node objects,
    so expanded sizes are summed from memoised subtree sizes, never by expanding.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            continue
        if key in on_path:
            line = node.start_mark.line + 1
            raise _YamlLimit(f"an anchor is used inside itself (recursive alias, line {line})")
        if key in size:
            continue  # an alias to a node already measured
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    if size[id(root)] > MAX_YAML_NODES:
        raise _YamlLimit(
            f"its aliases expand to {size[id(root)]:,} YAML nodes; at most {MAX_YAML_NODES:,} "
            "are allowed (a guard against YAML bombs)"
        )


def _check_duplicate_keys(node: yaml.MappingNode) -> None:
    first: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        line = key_node.start_mark.line + 1
        key = (key_node.tag, key_node.value)
        if key in first:
            raise _YamlLimit(
                f"key {quote(key_node.value)} appears twice in one mapping "
                f"(lines {first[key]} and {line})"
            )
        first[key] = line


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the limits above (raises yaml.YAMLError or _YamlLimit)."""
    if len(text) > MAX_RECIPE_BYTES:
        raise _YamlLimit(f"it is larger than {MAX_RECIPE_BYTES // (1 << 20)} MiB")
    loader = _GuardedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if loader.aliases > MAX_YAML_ALIASES:
            raise _YamlLimit(
                f"it uses {loader.aliases} YAML aliases; at most {MAX_YAML_ALIASES} are allowed "
                "(a guard against YAML bombs)"
            )
        _check_node_graph(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{where}: {context}, {problem}" if context else f"{where}: {problem}"


def _safe_yaml(text: str, what: str) -> Any:
    """Load YAML text, turning every failure into a RecipeError that starts with ``what``."""
    try:
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{what} is not valid YAML{_yaml_problem(exc)}.") from None
    except _YamlLimit as exc:
        raise RecipeError(f"{what} is refused: {exc}.") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values such as 2001-13-01 or `!!int abc`.
        raise RecipeError(
            f"{what} is not valid YAML: a value cannot be read ({type(exc).__name__}: {exc})."
        ) from None


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse recipe YAML into a mapping (RecipeError for bad YAML, bombs or a non-mapping)."""
    data = _safe_yaml(text, f"Recipe {source}")
    if data is None:
        raise RecipeError(
            f"Recipe {source} is empty; it must be a YAML mapping with data, backbone and "
            "finetune keys."
        )
    if not isinstance(data, dict):
        raise RecipeError(
            f"Recipe {source} must be a YAML mapping with data, backbone and finetune keys; "
            f"it holds a {type(data).__name__}."
        )
    return data


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """Read a recipe file (a regular file of at most 1 MiB, UTF-8) into a mapping."""
    path = Path(path)
    raw = read_file(path, "recipe file", limit=MAX_RECIPE_BYTES, error=RecipeError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"Cannot read recipe {path}: {exc}.") from None
    return parse_yaml(text, str(path))


class Override(NamedTuple):
    """One applied ``--set``: its text, key path, and the prefix of the path it created.

    ``created`` ends at the first key that was absent (or null) in the recipe, or is the
    whole path when only existing keys were followed.
    """

    flag: str
    path: tuple[str, ...]
    created: tuple[str, ...]


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a recipe mapping."""
    return _apply_overrides(data, overrides)[0]


def _apply_overrides(
    data: dict[str, Any], overrides: list[str]
) -> tuple[dict[str, Any], list[Override]]:
    import copy

    data = copy.deepcopy(data)
    applied: list[Override] = []
    for override in overrides:
        if "=" not in override:
            raise RecipeError(f"--set {_flag(override)} must look like key.path=value.")
        path, raw_value = override.split("=", 1)
        keys = path.strip().split(".")
        if not all(keys):
            raise RecipeError(f"--set {_flag(override)}: empty key in path {quote(path)}.")
        value = parse_yaml_value(raw_value, override)
        node: Any = data
        created = len(keys)
        for depth, key in enumerate(keys[:-1]):
            if isinstance(node, dict) and node.get(key) is None:
                created = min(created, depth + 1)
                if _is_index(keys[depth + 1]):
                    where = _dotted(keys[: depth + 1])
                    raise RecipeError(
                        f"--set {_flag(override)}: {where} does not exist, so it has no item "
                        f"{_clip(keys[depth + 1])}; set the whole list instead "
                        f"(--set '{where}=[...]')."
                    )
            node = _descend(node, key, keys[: depth + 1], override)
        last = keys[-1]
        if isinstance(node, list):
            node[_list_index(node, last, keys, override)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError(f"--set {_flag(override)}: {_dotted(keys[:-1])} is not a mapping.")
        applied.append(Override(override, tuple(keys), tuple(keys[:created])))
    return data, applied


def parse_yaml_value(raw: str, override: str) -> Any:
    if not raw.strip():
        return ""
    return _safe_yaml(raw, f"--set {_flag(override)}: the value")


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit()


def _list_index(node: list[Any], key: str, keys: list[str], override: str) -> int:
    if not _is_index(key) or int(key) >= len(node):
        raise RecipeError(
            f"--set {_flag(override)}: {_dotted(keys)} does not exist (list of {len(node)})."
        )
    return int(key)


def _descend(node: Any, key: str, keys: list[str], override: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, keys, override)]
    if not isinstance(node, dict):
        raise RecipeError(f"--set {_flag(override)}: {_dotted(keys[:-1])} is not a mapping.")
    if key not in node or node[key] is None:
        node[key] = {}
    return node[key]


def validate_recipe(
    data: dict[str, Any], source: str = "<recipe>", registry: Registry | None = None
) -> Any:
    """Validate a recipe mapping into a Recipe object (RecipeError on any problem)."""
    return _validate(data, source, registry, [])


def _validate(
    data: dict[str, Any], source: str, registry: Registry | None, overrides: list[Override]
) -> Any:
    model = recipe_model(registry)
    problems = _out_of_range_integers(data) + _non_utf8_strings(data)
    recipe = None
    try:
        # strict=True reaches nested models whose own config is lax (a plugin's too).
        recipe = model.model_validate(data, strict=True)
    except ValidationError as exc:
        found = {problem.parts for problem in problems}
        problems += [p for p in _problems(exc, data) if p.parts not in found]
    if problems:
        raise RecipeError(_describe_problems(problems, source, overrides)) from None
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read, override and validate a YAML recipe; default its name to the file stem.

    A validation error caused by a ``--set`` override names that flag.
    """
    data = read_recipe_file(path)
    data, applied = _apply_overrides(data, overrides or [])
    data.setdefault("name", default_name(Path(path).stem))
    return _validate(data, str(path), None, applied)


def recipe_to_yaml(recipe: BaseModel) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
