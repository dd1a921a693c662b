"""The ``train`` and ``eval`` sections of a stage: optimiser, schedule, batches (torch-free).

:mod:`clue_fw.training.optim` builds the optimiser and schedule from a :class:`TrainSpec`;
the stages read :class:`EvalSpec` for evaluation batching.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from clue_fw.spec_dumps import drop_defaults
from clue_fw.specs import StrictModel

FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a learning rate or weight decay above it overflows the optimiser."""


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
    compile: bool = Field(
        False,
        description="Compile each training step's forward pass and loss with torch.compile "
        "(inductor, fixed shapes); where compiling fails or is unsupported (no C++ compiler, "
        "an unsupported op), one line is logged and the step runs eagerly. Dropout masks then "
        "come from inductor's random numbers: a compiled run repeats itself, but is not the "
        "eager run to the bit (docs/scale.md).",
    )

    @model_serializer(mode="wrap")
    def _without_default_optimisation(self, handler: Any) -> Any:
        """Leave the optimiser, schedule and speed keys out of dumps while they hold their
        defaults: a recipe that does not use them keeps the recipe.yaml and recipe
        sha256 it had before they existed, so runs started then still resume."""
        return drop_defaults(handler(self), self, {**OPTIMISATION_DEFAULTS, **SPEED_DEFAULTS})

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

SPEED_DEFAULTS: dict[str, Any] = {"compile": False}
"""Speed settings added later, left out of dumps at these defaults (same recipe sha256)."""

LR_SCALE_BATCH = 256
"""``lr_scale: linear`` multiplies lr by ``batch_size / LR_SCALE_BATCH`` (SimSiam)."""


class EvalSpec(StrictModel):
    batch_size: int = Field(1024, gt=0, description="Users scored at once in full ranking.")
