"""The optimiser and learning-rate schedule of a training stage, from its ``train`` settings.

>>> import torch
>>> from clue_fw.training.specs import TrainSpec
>>> train = TrainSpec(epochs=10, optimizer="adamw", weight_decay=0.05, schedule="cosine",
...                   warmup_epochs=1, min_lr=1e-5)
>>> optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(3))], train)
>>> schedule = lr_schedule(train, steps_per_epoch=100)
>>> schedule(0), schedule(99), schedule(1000)  # warm-up start, warm-up end, past the end
(1e-05, 0.001, 1e-05)

The schedule is a pure function of the global optimiser step (0-based, counted over the
stage's epochs) and of the stage's planned steps, ``epochs x steps_per_epoch``, so a run
resumed with ``--resume`` sets the same learning rate at every step as the uninterrupted
run, with no schedule state in the checkpoint. Early stopping ends a stage sooner; the
schedule stays planned over ``epochs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from clue_fw.training.specs import TrainSpec

DEFAULT_BETAS = (0.9, 0.999)
"""Adam's and AdamW's moment decay rates when ``train.betas`` is unset (torch's defaults)."""
DEFAULT_MOMENTUM = 0.9
"""SGD's momentum when ``train.momentum`` is unset."""


def build_optimizer(
    parameters: list[torch.nn.Parameter], train: TrainSpec, *, fused: bool | None = None
) -> torch.optim.Optimizer:
    """The optimiser of a stage: ``train.optimizer`` at ``train.peak_lr``.

    ``fused`` (default: whether the parameters are on CUDA) selects torch's fused
    implementation: one kernel for every parameter, and a step it can skip on the device
    (``found_inf``), which the training loop's deferred numerical guard uses instead of a
    host read per step. Adam, AdamW and SGD all have it. Off CUDA the optimiser is the
    plain one, and the guard reads every step before it is taken.
    """
    if fused is None:
        fused = bool(parameters) and parameters[0].device.type == "cuda"
    lr, decay, fuse = train.peak_lr, train.weight_decay, fused or None
    if train.optimizer == "sgd":
        momentum = DEFAULT_MOMENTUM if train.momentum is None else train.momentum
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=decay, fused=fuse)
    betas = DEFAULT_BETAS if train.betas is None else (train.betas[0], train.betas[1])
    kind = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return kind(parameters, lr=lr, betas=betas, weight_decay=decay, fused=fuse)


@dataclass(frozen=True)
class LrSchedule:
    """The learning rate of each optimiser step of a stage; call it with the step.

    Steps ``0 .. warmup_steps - 1`` rise linearly to ``peak`` (step s has
    ``peak * (s + 1) / warmup_steps``). After them, ``constant`` stays at ``peak``;
    ``cosine`` and ``linear`` decay from ``peak`` towards ``floor``, reached at
    ``total_steps`` (and held beyond it).
    """

    kind: Literal["constant", "cosine", "linear"]
    peak: float
    floor: float
    warmup_steps: int
    total_steps: int

    @property
    def varies(self) -> bool:
        """Whether any step's rate differs from ``peak`` (the optimiser's own lr)."""
        return self.kind != "constant" or self.warmup_steps > 0

    def __call__(self, step: int) -> float:
        step = max(step, 0)
        if step < self.warmup_steps:
            return self.peak * ((step + 1) / self.warmup_steps)  # exactly peak at the end
        if self.kind == "constant":
            return self.peak
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.kind == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            factor = 1.0 - progress
        return self.floor + (self.peak - self.floor) * factor


def lr_schedule(train: TrainSpec, steps_per_epoch: int) -> LrSchedule:
    """The schedule of a stage of ``train.epochs`` epochs of ``steps_per_epoch`` steps.

    Warm-up lasts ``warmup_epochs x steps_per_epoch`` steps, rounded to the nearest
    step (half up), and at least one when ``warmup_epochs`` is above 0.
    """
    total = train.epochs * steps_per_epoch
    warmup = 0
    if train.warmup_epochs > 0:
        steps = math.floor(train.warmup_epochs * steps_per_epoch + 0.5)
        warmup = min(max(1, steps), total)
    return LrSchedule(train.schedule, train.peak_lr, train.min_lr, warmup, total)


__all__ = ["DEFAULT_BETAS", "DEFAULT_MOMENTUM", "LrSchedule", "build_optimizer", "lr_schedule"]
